"""The ``clp`` command (typer + rich, from the ``cli`` extra).

Plugins add commands through the ``register_commands(cli)`` hook. Output fits the terminal
(or ``COLUMNS``, 80 by default, when piped); ``--json`` gives scripts plain data; a failure is
one or two lines on stderr and a non-zero exit code (``clp --debug ...`` shows the traceback).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.parse
from typing import Any

from ..demo import DEFAULT_DIRECTORY, DemoRun, run_demo
from ..events import event_to_dict
from ..log import LogEntry
from ..state import plain
from ._errors import CliError, describe, report
from ._tables import Col, make_console, print_records

INSTALL_HINT = "The clp command needs typer and rich: install clp-core[cli]  (pip install 'clp-core[cli]')"

AUDIT_COLUMNS = (Col("time", no_wrap=True), Col("phase", no_wrap=True), Col("intent", no_wrap=True), Col("payload"),
                 Col("guards"), Col("transition"), Col("diff"), Col("error"))
HISTORY_COLUMNS = (Col("seq", no_wrap=True), Col("time"), Col("intent"), Col("payload"), Col("source"),
                   Col("guards"), Col("transition"), Col("diff"))
PLUGIN_COLUMNS = (Col("name"), Col("distribution"), Col("status"), Col("hooks"))  # status says enabled or not


def _short(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(plain(value), default=str, ensure_ascii=False, separators=(", ", ": "))


def _guards_text(outcomes: Any) -> str:
    return " ".join(f"{g.name}:{'DENIED' if g.denied else 'ok'}" for g in outcomes)


def _diff_text(changes: Any) -> str:
    return ", ".join(f"{c.op} {c.path}" + ("" if c.op == "unset" else f" = {_short(c.value)}") for c in changes)


def _row(entry: LogEntry) -> list[str]:
    guards = _guards_text(entry.guard_outcomes)
    result = entry.transition_result
    transition = entry.transition_attempted or ""
    if transition:
        transition += " (permitted)" if result.permitted else " (refused)"
    diff = _diff_text(entry.state_diff)
    payload = _short(dict(entry.intent_payload or {}))
    staged = entry.staged_proposal or entry.accepted_proposal
    if staged is not None:
        payload += f"\n{'accepted' if entry.accepted_proposal is not None else 'staged'} {_short(dict(staged))}"
        if entry.proposal_source:
            payload += f" from {entry.proposal_source}"
    return [entry.timestamp[11:23], entry.phase, entry.intent_name or "", payload, guards, transition, diff,
            entry.error or ""]


def render_run(run: DemoRun, console: Any, number: int | None = None) -> None:
    """Print one demo run: its audit log (a table as wide as the console, or stacked), then the
    count before and after."""
    title = "Audit log of this run" + (f" (run {number})" if number is not None else "")
    print_records(console, title, AUDIT_COLUMNS, [_row(entry) for entry in run.entries])
    if run.denied_guard:
        console.print(f"guard {run.denied_guard} denied amount -5 and suggested {_short(run.suggestion)}: accepted",
                      markup=False)
    console.print(f"count was {run.count_before}, now {run.count_after}  (kept in {run.directory})", markup=False)


def _usage_piece(param: Any, ctx: Any) -> list[str]:
    name = param.metavar or (param.name or "").upper()
    name += "..." if param.nargs != 1 else ""
    return [name if param.required else f"[{name}]"]


def _plain_usage(command: Any) -> None:
    """Usage lines in the usual ``clp history [OPTIONS] URL KEY`` form (typer writes ``{URL}``),
    for every command, plugins' included."""
    import functools

    for param in command.params:
        if getattr(param, "param_type_name", None) == "argument":
            param.get_usage_pieces = functools.partial(_usage_piece, param)  # type: ignore[method-assign]


def _is_click_exit(exc: BaseException) -> bool:
    """Usage errors, ``Exit`` and ``Abort``: click (or typer's copy of it) reports them itself."""
    return type(exc).__module__.split(".")[0] in ("click", "typer")


def _group_class() -> Any:
    from typer.core import TyperGroup

    class ClpGroup(TyperGroup):
        """Turns a failed command into a short message and an exit code (``--debug``: re-raise)."""

        def get_command(self, ctx: Any, cmd_name: str) -> Any:
            command = super().get_command(ctx, cmd_name)
            if command is not None:
                _plain_usage(command)
            return command

        def invoke(self, ctx: Any) -> Any:
            import typer

            try:
                return super().invoke(ctx)
            except Exception as exc:
                if ctx.params.get("debug") or _is_click_exit(exc):
                    raise
                raise typer.Exit(report(exc)) from None

    return ClpGroup


def build_app() -> Any:
    """The typer application, with the commands plugins register."""
    import typer

    from ..plugins import registration_manager

    app = typer.Typer(name="clp", help="CLP: AI may propose values; only guarded, logged commits change state.",
                      no_args_is_help=True, add_completion=False, cls=_group_class(),
                      pretty_exceptions_enable=False)

    @app.callback()
    def root(
        debug: bool = typer.Option(False, "--debug", help="Show the traceback when a command fails."),
        strict: bool = typer.Option(False, "--strict", help="Unknown plugin names in the configuration are an "
                                    "error, not a warning (as CLP_STRICT_CONFIG=1)."),
    ) -> None:
        """CLP command line."""
        if strict:
            _set_strict()

    @app.command()
    def demo(
        directory: str = typer.Option(DEFAULT_DIRECTORY, "--dir", metavar="PATH",
                                      help="Folder the counter's state is kept in."),
        runs: int = typer.Option(1, "--runs", min=1, metavar="N",
                                 help="How many times to run (each run is a fresh runtime)."),
    ) -> None:
        """Run the counter contract on files: increments, a denial, an accepted suggestion."""
        console = make_console()
        for number in range(1, runs + 1):
            run = asyncio.run(run_demo(directory))
            render_run(run, console, number if runs > 1 else None)

    @app.command()
    def plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
        """List the built-in and discovered plugins: distribution, version, enabled or not and why, hooks."""
        rows = plugin_rows()
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        table = []
        for row in rows:
            why = row["reason"] + (f": {row['error']}" if row["error"] else "")
            distribution = " ".join(part for part in (row["distribution"], row["version"]) if part)
            table.append([row["name"], distribution, why, "\n".join(row["hooks"])])
        print_records(make_console(), "clp plugins", PLUGIN_COLUMNS, table, show_lines=False)

    url_argument = typer.Argument(..., metavar="URL", show_default=False,
                                  help="Event store URL, e.g. sqlite:///app.db")
    key_argument = typer.Argument(..., metavar="KEY", show_default=False, help="The aggregate (storage key).")

    @app.command()
    def history(
        url: str = url_argument,
        key: str = key_argument,
        as_json: bool = typer.Option(False, "--json", help="Print JSON Lines (one event a line) for scripts."),
    ) -> None:
        """Print an aggregate's event stream as a table."""
        from ..events import lineage

        async def read(store: Any) -> Any:
            return await store.get_events(key), await lineage(store, key)

        events, ancestry = _run_with_store(url, key, read)
        if as_json:
            for event in events:
                typer.echo(json.dumps(event_to_dict(event), ensure_ascii=False, default=str))
            return
        rows = [[str(event.seq), event.timestamp[:23].replace("T", " "), event.intent_name or event.kind,
                 _short(dict(event.payload)), event.proposal_source or "", _guards_text(event.guard_outcomes),
                 event.transition or "", _diff_text(event.diff)] for event in events]
        forked = " <- ".join(f"{parent}@{seq}" for parent, seq in ancestry)
        print_records(make_console(), f"{key}: {len(events)} events" + (f", forked from {forked}" if forked else ""),
                      HISTORY_COLUMNS, rows)

    @app.command()
    def state(
        url: str = url_argument,
        key: str = key_argument,
        at: int | None = typer.Option(None, "--at", metavar="SEQ", help="Sequence number (default: the latest)."),
        as_json: bool = typer.Option(False, "--json", help="Print the state as one line of JSON for scripts."),
    ) -> None:
        """Print the state of an aggregate as of a sequence number, as JSON."""
        from ..events import replay

        async def read(store: Any) -> Any:
            last = await store.last_seq(key)
            if at is not None and not 0 <= at <= last:
                raise typer.BadParameter(f"no event {at} in {key!r} (it has events 1 to {last})", param_hint="--at")
            return await replay(store, key, until=at)

        replayed = _run_with_store(url, key, read)
        if as_json:
            typer.echo(json.dumps(replayed.state, ensure_ascii=False, default=str))
        else:
            typer.echo(json.dumps(replayed.state, indent=2, ensure_ascii=False, default=str))

    from . import _store_commands

    _store_commands.register(app, url_argument, key_argument)
    registration_manager().hook.register_commands(cli=app)
    return app


def _set_strict() -> None:
    """Strict configuration for this process (``--strict``): re-read it, so an unknown plugin
    name is a :class:`~clp_core.errors.ConfigError`."""
    from ..config import STRICT_ENV
    from ..plugins import process_config

    os.environ[STRICT_ENV] = "1"
    process_config(refresh=True)


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """Configuration warnings as ``clp: warning: ...`` lines (others as Python prints them)."""
    import warnings

    from ..config import ConfigWarning

    if issubclass(category, ConfigWarning):
        print(f"clp: warning: {message}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr, end="")


def check_store_url(url: str) -> None:
    """Fail early, with what to do, on a URL ``clp history``/``clp state`` cannot read: no or an
    unknown scheme, ``memory://`` (empty in a new process), a local file that does not exist."""
    from ..plugins import registered
    from ..resolve import KNOWN_SCHEMES, missing_scheme_advice
    from ._store_commands import configure_plugins

    configure_plugins()
    scheme = urllib.parse.urlsplit(url).scheme
    schemes = sorted(registered("register_event_stores"))
    known = ", ".join(f"{s}://" for s in schemes)
    if not scheme:
        raise CliError(f"{url!r} is not a URL", f"give an event store URL such as sqlite:///app.db ({known})")
    if scheme not in schemes:
        hint = missing_scheme_advice(scheme) if scheme in KNOWN_SCHEMES else f"check the spelling; installed: {known}"
        raise CliError(f"unknown event store scheme {scheme!r} in {url!r}", hint)
    if scheme == "memory":
        raise CliError("memory:// holds nothing outside the process that wrote it",
                       "give the URL of a store that persists, such as sqlite:///app.db")
    if scheme == "sqlite":
        from ..storage.plugin import sqlite_path

        path = sqlite_path(url)
        if path != ":memory:" and not os.path.exists(path):
            raise CliError(f"no such database: {path} (clp only reads stores, it never creates one)",
                           "check the path (sqlite:///rel.db is relative to this folder, sqlite:////abs.db absolute)")


def _run_with_store(url: str, key: str, action: Any) -> Any:
    """Open the event store at ``url`` read-only (nothing is created), run ``await
    action(store)``, close it. A key without events is an error (a typo would otherwise print
    an empty history)."""
    from ..resolve import resolve_event_store

    check_store_url(url)

    async def run() -> Any:
        store = resolve_event_store(url, read_only=True)
        try:
            if await store.last_seq(key) == 0:
                raise CliError(f"no events under key {key!r} at {url}",
                               "check the key (it is the runtime's storage_key, case-sensitive)")
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def plugin_rows() -> list[dict[str, Any]]:
    """What ``clp plugins`` shows, as plain data."""
    from ..plugins import builtin_statuses, plugin_statuses

    return [
        {"name": s.name, "distribution": s.distribution, "version": s.version, "enabled": s.enabled,
         "reason": s.reason, "error": s.error, "hooks": s.hooks}
        for s in [*builtin_statuses(), *plugin_statuses()]
    ]


def main() -> None:
    """Entry point of the ``clp`` console script."""
    try:
        import rich  # noqa: F401
        import typer  # noqa: F401
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        sys.exit(1)
    import warnings

    warnings.showwarning = _show_warning
    try:
        if "--strict" in sys.argv[1:]:
            _set_strict()
        app = build_app()
    except Exception as exc:  # a plugin's register_commands failed
        if "--debug" in sys.argv[1:]:
            raise
        sys.exit(report(exc))
    app(prog_name="clp")


__all__ = ["CliError", "INSTALL_HINT", "build_app", "check_store_url", "describe", "main", "plugin_rows",
           "render_run"]
