"""The ``clp-inspect`` entry-point plugin: adds ``clp inspect`` to the ``clp`` command.

It implements no lifecycle hook, so runtimes are unaffected by it being installed; the web
stack is imported only when the command runs.
"""

# no ``from __future__ import annotations``: typer reads the annotations at run time, and
# typer itself is imported only when the command line is built.
from typing import Annotated, Any

from clp_core.plugin_api import hookimpl

name = "clp-inspect"


@hookimpl
def register_commands(cli: Any) -> None:
    import typer

    @cli.command("inspect")  # type: ignore[untyped-decorator]
    def inspect_command(
        storage_url: Annotated[str, typer.Argument(
            help="Storage URL, e.g. sqlite:///app.db (read, never written).")],
        event_store: Annotated[str | None, typer.Option(
            "--event-store", help="Event store URL (default: the storage URL, when its scheme has an event store).",
        )] = None,
        no_events: Annotated[bool, typer.Option(
            "--no-events", help="Read no event store (stored state only).")] = False,
        key: Annotated[list[str] | None, typer.Option(
            "--key", help="Also list this storage key (storage alone cannot list its keys). Repeatable.")] = None,
        host: Annotated[str, typer.Option(
            "--host", help="Address to bind; beyond loopback needs --token.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")] = 8765,
        token: Annotated[str | None, typer.Option(
            "--token", envvar="CLP_INSPECT_TOKEN",
            help="Require this token (16+ URL-safe characters) on every request; the printed URL carries it.",
        )] = None,
    ) -> None:
        """Serve a local, read-only page over a store: aggregates, event timelines, the state as
        of any event, live runtimes (pending intents, staged proposals, denials, errors)."""
        from ._reader import InspectError
        from ._security import BindError
        from ._server import serve

        try:
            serve(storage_url, event_store=False if no_events else event_store, keys=key or (), host=host, port=port,
                  token=token)
        except (BindError, InspectError, OSError) as exc:
            typer.echo(f"clp inspect: {exc}", err=True)
            raise typer.Exit(2) from None
