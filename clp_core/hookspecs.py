"""Hook specifications of the ``clp`` pluggy project.

Lifecycle hooks may be plain functions or coroutine functions; the runtime awaits them one
after the other. A ``before_*`` hook that raises stops its phase with nothing changed and
the error reaches the caller; ``after_*`` hooks run once the phase is done, outside the
runtime's lock, and their failures go to ``on_error`` (the phase has already happened).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # the runtime imports this module: no import at run time
    from .contract import Guard
    from .events import Event
    from .lifecycle import Context
    from .log import Intent, LogEntry, Proposal
    from .messages import Message

hookspec = pluggy.HookspecMarker("clp")
hookimpl = pluggy.HookimplMarker("clp")

LIFECYCLE_HOOKS = (
    "before_dispatch",
    "after_dispatch",
    "before_propose",
    "after_propose",
    "before_commit",
    "after_commit",
    "on_guard_deny",
    "on_error",
    "on_close",
    "on_saga_event",
    "on_log_entry",
    "deliver_message",
)


@hookspec
def before_dispatch(intent: Intent) -> None:
    """An intent is about to become current. Raise to refuse it."""


@hookspec
def after_dispatch(intent: Intent, entry: LogEntry) -> None:
    """An intent became current; ``entry`` is its log entry."""


@hookspec
def before_propose(intent: Intent) -> None:
    """The AI provider is about to be asked for a proposal. Raise to skip asking."""


@hookspec
def after_propose(intent: Intent, proposal: Proposal) -> None:
    """A proposal was staged (``proposal.source`` says from where)."""


@hookspec
def before_commit(intent: Intent) -> None:
    """A commit of ``intent`` is about to run guards and effects. Raise to refuse it."""


@hookspec
def after_commit(intent: Intent, entry: LogEntry) -> None:
    """A commit succeeded (and was persisted, when persisting); ``entry`` records it."""


@hookspec
def on_guard_deny(guard: Guard, context: Context) -> None:
    """``guard`` (a :class:`clp_core.Guard`) denied a commit seen through ``context``."""


@hookspec
def on_error(error: BaseException, phase: str) -> None:
    """A phase failed: user code, a provider, storage or a hook raised."""


@hookspec
def on_close() -> None:
    """The runtime is closing (``await runtime.close()`` or leaving ``async with``): flush
    queues, close connections. Failures are logged, never raised."""


@hookspec
def on_log_entry(entry: LogEntry) -> None:
    """An entry was added to the audit log (every phase, refusals and failures included);
    called after the runtime's lock is released, in log order."""


@hookspec
def on_saga_event(event: Event) -> None:
    """A saga made progress: ``event.kind`` is ``saga_started``, ``step_started``,
    ``step_completed``, ``step_failed``, ``step_compensated``, ``compensation_failed`` or
    ``saga_completed``/``saga_compensated``/``saga_failed``; ``event.data`` has the step."""


@hookspec
def deliver_message(message: Message) -> None:
    """Deliver a message a transition emitted (``emit``), after its commit landed; called
    outside the lock, at least once per message. Raise to have the delivery retried (with
    back-off, then reported and kept for a later try); de-duplicate by ``message.id``."""


@hookspec
def register_storage() -> dict[str, Any]:  # type: ignore[empty-body]
    """Return ``{scheme: factory}``; ``factory(url)`` builds a storage adapter for that URL."""


@hookspec
def register_event_stores() -> dict[str, Any]:  # type: ignore[empty-body]
    """Return ``{scheme: factory}``; ``factory(url)`` builds an event store for that URL."""


@hookspec
def register_validators() -> dict[str, Any]:  # type: ignore[empty-body]
    """Return ``{name: factory}``; ``factory(contract, options)`` builds a validator."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``clp`` command line (a :class:`typer.Typer`)."""
