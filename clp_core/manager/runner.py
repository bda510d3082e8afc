"""The hook runner (:class:`HookRunner`): calls a runtime's lifecycle hooks through the
plugin manager, then runs or awaits, in order, what they deferred or returned to await.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Sequence
from types import CoroutineType
from typing import Any

from ..errors import ClpError, HookError
from .labelling import Failure, Pending, _call_state, _CallState, _labelled_error
from .plugin_manager import _SPEC_GETTERS, ClpPluginManager, new_manager, plugin_name

logger = logging.getLogger("clp")


def _close(results: Iterable[Any]) -> None:
    for result in results:
        if result.__class__ is Pending:
            result.close()


class HookRunner:
    """Calls a runtime's lifecycle hooks through pluggy, then runs or awaits, in order, what
    they deferred or returned to await.

    Order: the middleware in the order given, then the plugins (pluggy's ``tryfirst`` and
    ``trylast`` markers and wrappers are honoured). ``pm`` may be given ready-made.
    """

    def __init__(self, plugins: Sequence[Any] = (), middleware: Sequence[Any] = (), *,
                 pm: ClpPluginManager | None = None) -> None:
        if pm is None:
            pm = new_manager(plugins)
            for index, obj in reversed(list(enumerate(middleware))):
                pm.register_middleware(obj, name=f"middleware:{index}:{plugin_name(obj)}")
        self.pm = pm

    def has(self, hook: str) -> bool:
        return hook in self.pm.implemented

    async def call(self, hook: str, **kwargs: Any) -> None:
        """Call every implementation in order; the first failure stops and is raised.

        A :class:`ClpError` propagates as is; anything else is wrapped in :class:`HookError`.
        """
        pm = self.pm
        if hook not in pm.implemented:  # nothing to call: costs a set lookup
            return
        plan = pm.plan(hook)
        if plan is not None:
            args = _SPEC_GETTERS[hook](kwargs)
            for plugin, function, argnames in plan:
                try:
                    result = function(*args) if argnames is None else function(*[kwargs[a] for a in argnames])
                    if result is not None and inspect.isawaitable(result):
                        await result
                except ClpError:
                    raise
                except Exception as exc:
                    raise HookError(hook, plugin) from exc
            return
        caller = getattr(pm.hook, hook)
        state = _CallState(caller, False)
        token = _call_state.set(state)
        try:
            results = caller(**kwargs)
        except ClpError:
            _close(state.pending)
            raise
        except Exception as exc:  # from a wrapper, or pluggy itself
            _close(state.pending)
            raise HookError(hook, "<wrapper>") from exc
        finally:
            _call_state.reset(token)
        if not state.deferring:
            return
        for index, item in enumerate(results):
            if item.__class__ is not Pending:
                continue
            _, awaitable, function, args, call_kwargs = item
            try:
                if awaitable is None:
                    awaitable = function(*args, **call_kwargs)
                    if awaitable is None or (awaitable.__class__ is not CoroutineType
                                             and not inspect.isawaitable(awaitable)):
                        continue
                await awaitable
            except ClpError:
                _close(results[index + 1:])
                raise
            except Exception as exc:
                _close(results[index + 1:])
                raise HookError(hook, item[0]) from exc

    async def call_quietly(self, hook: str, **kwargs: Any) -> list[BaseException]:
        """Call every implementation; failures are collected (each a HookError naming its
        plugin, or the ClpError raised, with ``__cause__`` set) and logged, not raised."""
        errors: list[BaseException] = []
        pm = self.pm
        if hook not in pm.implemented:
            return errors
        plan = pm.plan(hook)
        if plan is not None:
            args = _SPEC_GETTERS[hook](kwargs)
            for plugin, function, argnames in plan:
                try:
                    result = function(*args) if argnames is None else function(*[kwargs[a] for a in argnames])
                    if result is not None and inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    errors.append(_failed(hook, plugin, exc))
            return errors
        caller = getattr(pm.hook, hook)
        state = _CallState(caller, True)
        token = _call_state.set(state)
        try:
            results = caller(**kwargs)
        except Exception as exc:  # from a wrapper, or pluggy itself
            _close(state.pending)
            results = []
            errors.append(_failed(hook, "<wrapper>", exc))
        finally:
            _call_state.reset(token)
        for item in results:
            cls = item.__class__
            if cls is Pending:
                _, awaitable, function, args, call_kwargs = item
                try:
                    if awaitable is None:
                        awaitable = function(*args, **call_kwargs)
                        if awaitable is None or (awaitable.__class__ is not CoroutineType
                                                 and not inspect.isawaitable(awaitable)):
                            continue
                    await awaitable
                except Exception as exc:
                    errors.append(_failed(hook, item[0], exc))
            elif cls is Failure:
                error = item.error
                logger.error("clp hook %s of %s failed", hook, item.plugin, exc_info=error.__cause__ or error)
                errors.append(error)
        return errors


def _failed(hook: str, plugin: str, exc: Exception) -> BaseException:
    logger.exception("clp hook %s of %s failed", hook, plugin)
    error = _labelled_error(hook, plugin, exc)
    error.__cause__ = exc if error is not exc else exc.__cause__
    return error
