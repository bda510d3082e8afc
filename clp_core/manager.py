"""The ``clp`` plugin manager and the hook runner: how lifecycle hooks are called.

Hooks go through pluggy's own hook callers (``pm.hook.<name>(**kwargs)``), then what they
returned to await is awaited, in order (as datasette does), so wrappers, ``tryfirst`` and
``trylast``, ``pm.trace`` and ``pm.add_hookcall_monitoring`` work as pluggy documents them.
While a hook has no wrapper and the manager is neither traced nor monitored, the runner
calls the implementations itself in pluggy's order (the same calls, without the cost of
``_multicall``). The built-in plugins are registered on every manager.
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
import logging
import operator
import re
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from types import CoroutineType
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .errors import ClpError, HookError

logger = logging.getLogger("clp")

#: Plugins registered on every manager, whatever the configuration: ``(name, module)``.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("clp-storage", "clp_core.storage.plugin"),
    ("clp-types", "clp_core.validation"),
)

_HOOK_NAMES = frozenset(
    n for n in dir(hookspecs) if callable(getattr(hookspecs, n)) and hasattr(getattr(hookspecs, n), "clp_spec")
)
_LIFECYCLE = frozenset(hookspecs.LIFECYCLE_HOOKS)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def has_markers(obj: Any) -> bool:
    """Whether some attribute of ``obj`` carries a ``@clp_core.hookimpl`` marker."""
    for attr in dir(obj):
        try:
            value = inspect.getattr_static(obj, attr)
        except AttributeError:
            continue
        value = getattr(value, "__func__", value)  # classmethod, staticmethod
        if getattr(value, "clp_impl", None) is not None:
            return True
    return False


# -- labelled implementations -------------------------------------------------------------
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


def _positional(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A fast ``kwargs -> (kwargs[n] for n in names)``, whatever order the caller used."""
    if len(names) > 1:
        return operator.itemgetter(*names)  # type: ignore[return-value]
    if names:
        name = names[0]
        return lambda kwargs: (kwargs[name],)
    return lambda kwargs: ()


_SPEC_ARGS = {hook: tuple(inspect.signature(getattr(hookspecs, hook)).parameters) for hook in _LIFECYCLE}
_SPEC_GETTERS = {hook: _positional(names) for hook, names in _SPEC_ARGS.items()}

#: One lifecycle hook's implementations in pluggy's call order, for the direct loop:
#: ``(plugin name, function, its argument names or None when they are the specification's)``.
Plan = tuple[tuple[str, Callable[..., Any], "tuple[str, ...] | None"], ...]


class ClpPluginManager(pluggy.PluginManager):
    """The ``clp`` pluggy manager. Implementations need ``@clp_core.hookimpl`` markers, except
    on middleware objects without any (see :meth:`register_middleware`): there, any method
    named like a hook (``before_commit``, or camelCase ``beforeCommit``) is one.

    Direct loop: while a lifecycle hook has no wrapper and the manager is neither traced nor
    monitored (``enable_tracing``, ``add_hookcall_monitoring``), :class:`HookRunner` calls its
    implementations itself, in pluggy's order with pluggy's arguments, which is what
    ``_multicall`` would do, at a fraction of the cost. ``fast_path = False`` turns it off.
    """

    fast_path = True

    def __init__(self) -> None:
        super().__init__("clp")
        self.add_hookspecs(hookspecs)
        self._adapting: Any = None  # the unmarked middleware object being registered
        self._implemented: frozenset[str] = frozenset()
        self._plans: dict[str, Plan] = {}
        # pluggy's own executor: tracing and monitoring replace it (then the plans are not used)
        self._plain_hookexec = getattr(self, "_inner_hookexec", None)
        self._registered_cache: dict[str, dict[str, Any]] = {}

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is not None or plugin is not self._adapting:
            return opts
        specname = name if name in _HOOK_NAMES else _snake(name)
        if specname in _HOOK_NAMES and callable(getattr(plugin, name, None)):
            return {"specname": specname} if specname != name else {}
        return None

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        registered = super().register(plugin, name)
        for caller in self.get_hookcallers(plugin) or ():
            if caller.name not in _LIFECYCLE:
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                if impl.wrapper or impl.hookwrapper:
                    labelled = _label_wrapper(caller.name, impl.plugin_name, impl.function)
                else:
                    labelled = _label(caller, impl.plugin_name, impl.function)
                impl.function = labelled  # type: ignore[misc]  # pluggy keeps the original argnames
        self._changed()
        return registered

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        removed = super().unregister(plugin, name)
        self._changed()
        return removed

    def register_middleware(self, obj: Any, name: str) -> None:
        """Register ``obj`` as it is if it carries ``@hookimpl`` markers, else adapted."""
        if has_markers(obj):
            self.register(obj, name=name)
            return
        self._adapting = obj
        try:
            self.register(obj, name=name)
        finally:
            self._adapting = None

    def _changed(self) -> None:
        self._implemented = frozenset(
            hook for hook in _HOOK_NAMES if (caller := getattr(self.hook, hook, None)) is not None
            and caller.get_hookimpls())
        self._registered_cache.clear()
        self._plans = {}
        if not self.fast_path or self._plain_hookexec is None:
            return
        for hook in _LIFECYCLE & self._implemented:
            impls = getattr(self.hook, hook).get_hookimpls()
            if any(i.wrapper or i.hookwrapper or i.kwargnames or not hasattr(i.function, "__wrapped__")
                   for i in impls):
                continue
            spec = _SPEC_ARGS[hook]
            self._plans[hook] = tuple(
                (i.plugin_name, i.function.__wrapped__, None if tuple(i.argnames) == spec else tuple(i.argnames))
                for i in reversed(impls))

    def plan(self, hook: str) -> Plan | None:
        """The direct loop for ``hook``, or None: call through pluggy."""
        if self._inner_hookexec is not self._plain_hookexec:
            return None
        return self._plans.get(hook)

    @property
    def implemented(self) -> frozenset[str]:
        """The hooks some registered plugin implements."""
        return self._implemented

    def implements(self, hook: str) -> bool:
        """Whether some registered plugin implements ``hook``."""
        return hook in self._implemented

    def registered(self, hook: str) -> dict[str, Any]:
        """The ``{name: factory}`` dicts returned from registration ``hook``, merged (cached
        until a plugin is registered or unregistered)."""
        merged = self._registered_cache.get(hook)
        if merged is None:
            merged = {}
            for contributed in getattr(self.hook, hook)():  # on a clash, the first registered wins
                merged.update(contributed or {})
            self._registered_cache[hook] = merged
        return merged


def builtin_plugins() -> list[tuple[str, Any]]:
    """The built-in plugins as ``(name, module)``."""
    return [(name, importlib.import_module(module)) for name, module in BUILTIN_PLUGINS]


def new_manager(plugins: Iterable[Any] = ()) -> ClpPluginManager:
    """A manager holding the built-in plugins, then ``plugins``."""
    pm = ClpPluginManager()
    for name, module in builtin_plugins():
        pm.register(module, name=name)
    for plugin in plugins:
        if not pm.is_registered(plugin):
            pm.register(plugin)
    return pm


def plugin_name(plugin: Any) -> str:
    name = getattr(plugin, "name", None)
    if isinstance(name, str):
        return name
    return getattr(plugin, "__name__", type(plugin).__name__)


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
        return hook in self.pm._implemented

    async def call(self, hook: str, **kwargs: Any) -> None:
        """Call every implementation in order; the first failure stops and is raised.

        A :class:`ClpError` propagates as is; anything else is wrapped in :class:`HookError`.
        """
        pm = self.pm
        if hook not in pm._implemented:  # nothing to call: costs a set lookup
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
        if hook not in pm._implemented:
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
