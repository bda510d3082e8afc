"""``clp outbox``, ``clp prune`` and ``clp delete``: reading and trimming what a store keeps."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import attrs

from ..events import EventStore
from ..persistence import EventPersistence, Records
from ..persistence.document import read_document
from ..resolve import resolve_event_store, resolve_storage
from ._errors import CliError
from ._tables import Col, make_console, print_records

if TYPE_CHECKING:
    import typer

OUTBOX_COLUMNS = (Col("id", no_wrap=True), Col("topic", no_wrap=True), Col("status"), Col("intent"),
                  Col("payload"))


def configure_plugins() -> None:
    """Configure the enabled plugins as a runtime would, so that what they install for the
    process (clp-crypto's encryption keys) applies to the stores a command opens."""
    from ..plugins import runtime_hooks

    runtime_hooks(None, ())


async def pending_messages(url: str, key: str, events: bool) -> list[dict[str, Any]]:
    """The messages stored under ``key`` and not yet delivered: from the document (storage URL)
    or from the event stream (``events``), opened read-only (nothing is created)."""
    configure_plugins()
    records = Records(0, window=0)
    if events:
        store = resolve_event_store(url, read_only=True)
        try:
            persistence = EventPersistence(store, key, {}, snapshot_every=1, records=records, report=lambda *a: None)
            await persistence.load()
            return persistence.records.outbox_list()
        finally:
            await store.close()
    adapter = resolve_storage(url, read_only=True)
    try:
        document = await adapter.load(key)
    finally:
        await adapter.close()
    if document is None:
        raise CliError(f"nothing stored under key {key!r} at {url}",
                       "check the key (it is the runtime's storage_key); for an event store add --events")
    _, stored = read_document(document, key=key, backend=str(getattr(adapter, "name", url)), empty=records)
    return stored.outbox_list()


def register(app: typer.Typer, url_argument: Any, key_argument: Any) -> None:
    import typer

    events_option = typer.Option(False, "--events", help="URL is an event store (default: a storage URL).")
    json_option = typer.Option(False, "--json", help="Print JSON for scripts.")
    dry_run_option = typer.Option(False, "--dry-run", help="Say what would go; remove nothing.")

    @app.command()
    def outbox(url: str = url_argument, key: str = key_argument, events: bool = events_option,
               as_json: bool = json_option) -> None:
        """List the messages an aggregate emitted that are not delivered yet (and why, if failed)."""
        messages = asyncio.run(pending_messages(url, key, events))
        if as_json:
            typer.echo(json.dumps(messages, ensure_ascii=False, default=str))
            return
        rows = [[m["id"], m["topic"],
                 f"failed after {m.get('attempts', 1)} tries: {m['error']}" if m.get("error") else "pending",
                 m.get("intent_id") or "", json.dumps(m.get("payload"), ensure_ascii=False, default=str)]
                for m in messages]
        print_records(make_console(), f"{key}: {len(messages)} undelivered", OUTBOX_COLUMNS, rows)

    @app.command()
    def prune(url: str = url_argument, key: str = key_argument,
              before: int = typer.Option(..., "--before", metavar="SEQ", help="Drop what replay from the latest "
                                         "snapshot at or before SEQ does not need."),
              dry_run: bool = dry_run_option, as_json: bool = json_option) -> None:
        """Drop an event stream's events and snapshots older than its latest snapshot at or before SEQ."""
        from .. import retention

        removal = asyncio.run(_with_store(url, lambda store: retention.prune(store, key, before, dry_run=dry_run)))
        _print_removal(removal, as_json)

    @app.command()
    def delete(url: str = url_argument, key: str = key_argument, events: bool = events_option,
               dry_run: bool = dry_run_option, as_json: bool = json_option) -> None:
        """Delete an aggregate: its document (storage URL) or its events and snapshots (--events)."""
        from .. import retention

        async def run() -> Any:
            configure_plugins()
            target = resolve_event_store(url) if events else resolve_storage(url)
            try:
                return await retention.delete(target, key, dry_run=dry_run)
            finally:
                await target.close()

        _print_removal(asyncio.run(run()), as_json)


async def _with_store(url: str, action: Any) -> Any:
    configure_plugins()
    store: EventStore = resolve_event_store(url)
    try:
        return await action(store)
    finally:
        await store.close()


def _print_removal(removal: Any, as_json: bool) -> None:
    import typer

    if as_json:
        typer.echo(json.dumps(attrs.asdict(removal)))
        return
    verb = "would remove" if removal.dry_run else "removed"
    what = f"{removal.events} events" if removal.kind == "events" else f"{removal.documents} document"
    kept = f"; replay starts at snapshot {removal.kept_from}" if removal.kept_from is not None else ""
    typer.echo(f"{removal.key}: {verb} {what}{kept}")
