"""Labelled implementations: how the plugin manager wraps each lifecycle implementation,
so that failures name their plugin and awaitables are deferred to the hook runner.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Generator
from typing import Any

import attrs

from ..errors import ClpError, HookError

# Lifecycle implementations are called by pluggy through a function that names the plugin
# in failures. A HookRunner call puts a _CallState in a context variable (a pluggy call is
# synchronous, so the labelled functions see their own call's state):
# - strict calls raise (a ClpError as is, anything else as a HookError naming the plugin),
#   so pluggy stops there and wrappers see the error; quiet calls return a Failure, so
#   every implementation runs;
# - an awaitable comes back as a Pending; from then on, the implementations pluggy calls
#   next are not run but deferred (a Pending too), so that the runner runs and awaits them
#   one after the other, in pluggy's order, as if each had been awaited in turn.
# Outside a HookRunner call (``pm.hook.x(...)`` directly) results come back as they are.


class _CallState:
    __slots__ = ("caller", "deferring", "pending", "quiet")

    def __init__(self, caller: Any, quiet: bool) -> None:
        self.caller = caller  # the HookCaller called: nested calls of other ones are direct
        self.quiet = quiet
        self.deferring = False
        self.pending: list[Pending] = []


_call_state: contextvars.ContextVar[_CallState | None] = contextvars.ContextVar("clp_hook_call", default=None)


class Pending(tuple[Any, ...]):
    """``(plugin, awaitable, function, args, kwargs)``: an implementation's result to await,
    or (``awaitable`` None) its deferred call. A tuple: cheap to build, once per call."""

    __slots__ = ()

    @property
    def plugin(self) -> str:
        return str(self[0])

    def close(self) -> None:
        close = getattr(self[1], "close", None)
        if close is not None:
            close()


_new = tuple.__new__


@attrs.define(slots=True)
class Failure:
    """An implementation's failure in a quiet call: a HookError naming the plugin (with
    ``__cause__`` set), or the ClpError it raised."""

    plugin: str
    error: BaseException


def _labelled_error(hook: str, plugin: str, exc: BaseException) -> BaseException:
    return exc if isinstance(exc, ClpError) else HookError(hook, plugin)


def _label(caller: Any, plugin: str, function: Callable[..., Any]) -> Callable[..., Any]:
    hook = caller.name
    isawaitable = inspect.isawaitable
    get_state = _call_state.get

    if inspect.iscoroutinefunction(function):
        # nothing runs before it is awaited: always deferred (no coroutine to close if the
        # call stops before it)
        def labelled_async(*args: Any, **kwargs: Any) -> Any:
            state = get_state()
            if state is None or state.caller is not caller:
                return function(*args, **kwargs)
            state.deferring = True
            return _new(Pending, (plugin, None, function, args, kwargs))

        labelled_async.__wrapped__ = function  # type: ignore[attr-defined]
        return labelled_async

    def labelled(*args: Any, **kwargs: Any) -> Any:
        state = get_state()
        if state is not None and state.caller is not caller:
            state = None
        if state is not None and state.deferring:
            return _new(Pending, (plugin, None, function, args, kwargs))
        try:
            result = function(*args, **kwargs)
        except Exception as exc:
            error = _labelled_error(hook, plugin, exc)
            if state is not None and state.quiet:
                if error is not exc:
                    error.__cause__ = exc
                return Failure(plugin, error)
            if error is exc:
                raise
            raise error from exc
        if result is None or state is None or not isawaitable(result):
            return result
        state.deferring = True
        pending = _new(Pending, (plugin, result, None, None, None))
        state.pending.append(pending)
        return pending

    labelled.__wrapped__ = function  # type: ignore[attr-defined]
    return labelled


def _label_wrapper(hook: str, plugin: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def labelled(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        try:
            return (yield from function(*args, **kwargs))
        except ClpError:
            raise
        except Exception as exc:
            raise HookError(hook, plugin) from exc
    return labelled
