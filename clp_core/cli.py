"""The ``clp`` command (typer + rich, from the ``cli`` extra).

Plugins add commands through the ``register_commands(cli)`` hook.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from .demo import DEFAULT_DIRECTORY, DemoRun, run_demo
from .events import event_to_dict
from .log import LogEntry
from .state import plain

INSTALL_HINT = "The clp command needs typer and rich: install clp-core[cli]  (pip install 'clp-core[cli]')"


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
    """Print one demo run: its audit log as a rich table, then the count before and after."""
    from rich.table import Table

    title = "Audit log of this run" + (f" (run {number})" if number is not None else "")
    table = Table(title=title, show_lines=True)
    for column in ("time", "phase", "intent"):
        table.add_column(column, no_wrap=True)
    table.add_column("payload", overflow="fold", ratio=3)
    table.add_column("guards", no_wrap=True)
    for column in ("transition", "diff", "error"):
        table.add_column(column, overflow="fold", ratio=2)
    for entry in run.entries:
        table.add_row(*_row(entry))
    console.print(table)
    if run.denied_guard:
        console.print(f"guard {run.denied_guard} denied amount -5 and suggested {_short(run.suggestion)}: accepted")
    console.print(f"count was {run.count_before}, now {run.count_after}  (kept in {run.directory})")


def build_app() -> Any:
    """The typer application, with the commands plugins register."""
    import typer
    from rich.console import Console

    from .plugins import registration_manager

    app = typer.Typer(name="clp", help="CLP: AI may propose values; only guarded, logged commits change state.",
                      no_args_is_help=True, add_completion=False)

    @app.callback()
    def root() -> None:
        """CLP command line."""

    @app.command()
    def demo(
        directory: str = typer.Option(DEFAULT_DIRECTORY, "--dir", help="Folder the counter's state is kept in."),
        runs: int = typer.Option(1, "--runs", min=1, help="How many times to run (each run is a fresh runtime)."),
    ) -> None:
        """Run the counter contract on files: increments, a denial, an accepted suggestion."""
        console = Console()
        if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
            console = Console(width=140)
        for number in range(1, runs + 1):
            run = asyncio.run(run_demo(directory))
            render_run(run, console, number if runs > 1 else None)

    @app.command()
    def plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON for machines.")) -> None:
        """List the built-in and discovered plugins: distribution, version, enabled or not and why, hooks."""
        rows = plugin_rows()
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        from rich.table import Table

        table = Table(title="clp plugins")
        for column in ("name", "distribution", "version", "enabled", "why", "hooks"):
            table.add_column(column, overflow="fold")
        for row in rows:
            why = row["reason"] + (f": {row['error']}" if row["error"] else "")
            table.add_row(row["name"], row["distribution"] or "", row["version"] or "",
                          "yes" if row["enabled"] else "no", why, ", ".join(row["hooks"]))
        Console(width=160).print(table)

    @app.command()
    def history(
        url: str = typer.Argument(..., help="Event store URL, e.g. sqlite:///app.db"),
        key: str = typer.Argument(..., help="The aggregate (storage key)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON Lines for machines."),
    ) -> None:
        """Print an aggregate's event stream as a table."""
        events = _run_with_store(url, lambda store: store.get_events(key))
        if as_json:
            for event in events:
                typer.echo(json.dumps(event_to_dict(event), ensure_ascii=False, default=str))
            return
        from rich.table import Table

        table = Table(title=f"{key}: {len(events)} events", show_lines=True)
        for column in ("seq", "time", "intent", "payload", "source", "guards", "transition", "diff"):
            table.add_column(column, overflow="fold")
        for event in events:
            guards, diff = _guards_text(event.guard_outcomes), _diff_text(event.diff)
            table.add_row(str(event.seq), event.timestamp[:23], event.intent_name or event.kind,
                          _short(dict(event.payload)), event.proposal_source or "", guards, event.transition or "",
                          diff)
        Console(width=160).print(table)

    @app.command()
    def state(
        url: str = typer.Argument(..., help="Event store URL, e.g. sqlite:///app.db"),
        key: str = typer.Argument(..., help="The aggregate (storage key)."),
        at: int | None = typer.Option(None, "--at", help="Sequence number (default: the latest)."),
    ) -> None:
        """Print the state of an aggregate as of a sequence number, as JSON."""
        from .events import replay

        async def read(store: Any) -> Any:
            last = await store.last_seq(key)
            if at is not None and not 0 <= at <= last:
                raise typer.BadParameter(f"no event {at} in {key!r} (it has events 1 to {last})", param_hint="--at")
            return await replay(store, key, until=at)

        replayed = _run_with_store(url, read)
        typer.echo(json.dumps(replayed.state, indent=2, ensure_ascii=False, default=str))

    registration_manager().hook.register_commands(cli=app)
    return app


def _run_with_store(url: str, action: Any) -> Any:
    """Open the event store at ``url``, run ``await action(store)``, close it."""
    from .events import resolve_event_store

    async def run() -> Any:
        store = resolve_event_store(url)
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def plugin_rows() -> list[dict[str, Any]]:
    """What ``clp plugins`` shows, as plain data."""
    from .plugins import builtin_statuses, plugin_statuses

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
    build_app()()


if __name__ == "__main__":
    main()
