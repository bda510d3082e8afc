"""The inspector's web application (Starlette, Jinja2 templates, htmx; GET routes only).

Pages are rendered on the server with autoescaping on: every value shown (payloads,
proposals, keys, errors) is untrusted text and is never marked safe (the one filter that
returns markup, ``dotted``, joins escaped parts with ``<wbr>``). The page loads four static
files from this package (htmx, inspect.js, inspect.css, favicon.svg) and nothing else. The
``/stream`` route sends server-sent events when an aggregate gets a new event or its live
runtimes publish; inspect.js then fetches the changed fragments with htmx.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import hashlib
import json
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from clp_core.plugin_api import ClpError, Event, HistoryError, plain

from . import __version__
from ._reader import MISSING, InspectError, StoreReader, redact
from ._security import LOOPBACK_NAMES, Guard

HERE = Path(__file__).resolve().parent
FILTERS = ("all", "commits", "denials", "errors", "replays")
TIMELINE_LIMIT = 500


def _json(value: Any, indent: int | None = None) -> str:
    separators = (",", ": ") if indent else (", ", ": ")
    return json.dumps(plain(value), indent=indent, ensure_ascii=False, default=str, separators=separators)


def compact(value: Any, limit: int = 300) -> str:
    """One-line JSON, cut at ``limit`` characters (plain text: the template escapes it)."""
    if value is MISSING:
        return "(absent)"
    text = _json(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pretty(value: Any) -> str:
    return _json(value, indent=2)


def clock(timestamp: str | None) -> str:
    """``12:34:56.789`` of an ISO timestamp (UTC as recorded)."""
    if not timestamp:
        return ""
    try:
        moment = _dt.datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return str(timestamp)[:23]
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def source_class(source: Any) -> str:
    if not source or not isinstance(source, str):
        return "none"
    if source.startswith("guard:"):
        return "guard"
    return source if source in ("user", "ai") else "other"


def dotted(path: Any) -> Markup:
    """A dot path with a line-break opportunity after each dot; each part escaped."""
    return Markup(".<wbr>").join(escape(part) for part in str(path).split("."))


def link(path: str, **params: Any) -> str:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None and v != ""})
    return f"{path}?{query}" if query else path


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # everything, whatever the template's name
        undefined=jinja2.ChainableUndefined,  # live documents are data from elsewhere: missing is empty
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(compact=compact, pretty=pretty, clock=clock, source_class=source_class, dotted=dotted)
    env.globals.update(link=link, version=__version__, MISSING=MISSING)
    return env


def _commit_row(event: Event) -> dict[str, Any]:
    return {
        "kind": "commit" if event.kind == "commit" else "saga",
        "seq": event.seq,
        "timestamp": event.timestamp,
        "intent": event.intent_name or event.kind,
        "payload": plain(event.payload) if event.kind == "commit" else plain(event.data),
        "source": event.proposal_source,
        "guards": [{"name": g.name, "denied": g.denied} for g in event.guard_outcomes],
        "transition": event.transition,
        "diff": [{"op": c.op, "path": c.path, "value": plain(c.value)} for c in event.diff],
        "idempotency_key": event.idempotency_key,
        "error": None,
        "suggestion": None,
        "suggestion_source": None,
        "denied_guard": None,
        "runtime": None,
    }


def _live_rows(live: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    runtimes = live.get("runtimes") if live else None
    if not isinstance(runtimes, Mapping):
        return rows
    for runtime_id, runtime in runtimes.items():
        for record in runtime.get("recent") or [] if isinstance(runtime, Mapping) else []:
            if not isinstance(record, Mapping) or record.get("kind") not in ("denial", "error", "replay"):
                continue
            guards = record.get("guard_outcomes")
            guards = guards if isinstance(guards, list) else []
            rows.append({
                "kind": record["kind"],
                "seq": None,
                "timestamp": str(record.get("timestamp") or ""),
                "intent": record.get("intent_name") or f"({record.get('phase') or 'runtime'})",
                "payload": record.get("intent_payload"),
                # a failed commit's source is its guard's suggestion's; a replay's, its intent's
                "source": record.get("proposal_source") if record["kind"] == "replay" else None,
                "suggestion_source": record.get("proposal_source"),
                "guards": [g for g in guards if isinstance(g, Mapping)],
                "denied_guard": record.get("denied_guard"),
                "transition": record.get("transition"),
                "error": record.get("error"),
                "suggestion": record.get("suggestion"),
                "phase": record.get("phase"),
                "runtime": str(runtime_id),
            })
    return rows


def _runtimes(live: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    runtimes = live.get("runtimes") if live else None
    if not isinstance(runtimes, Mapping):
        return []
    found = [dict(r) for r in runtimes.values() if isinstance(r, Mapping)]
    found.sort(key=lambda r: str(r.get("updated") or ""), reverse=True)  # the latest first,
    return sorted(found, key=lambda r: bool(r.get("closed")))  # the running ones before the closed


_SHOWN = {"commits": ("commit", "saga"), "denials": ("denial",), "errors": ("error",), "replays": ("replay",)}


def _matches(row: Mapping[str, Any], show: str) -> bool:
    return show == "all" or row["kind"] in _SHOWN[show]


def create_app(
    reader: StoreReader,
    *,
    token: str | None = None,
    allowed_hosts: Iterable[str] | None = LOOPBACK_NAMES,
    poll_interval: float = 0.5,
    stream_seconds: float = 300.0,
) -> Any:
    """The ASGI application over ``reader`` (wrapped in :class:`Guard`: GET only, Host and
    token checks, security headers). ``stream_seconds`` ends each event stream (the browser
    reconnects); ``poll_interval`` is how often a stream looks for new events."""
    env = _environment()

    def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("storage_url", redact(reader.storage_url))
        context.setdefault("event_store_url", redact(reader.event_store_url))
        context.setdefault("notes", reader.notes)
        return HTMLResponse(env.get_template(name).render(**context), status_code=status)

    def problem(status: int, message: str) -> HTMLResponse:
        return render("error.html", status=status, message=message, aggregates=None, key=None)

    async def checked_key(request: Request) -> str:
        key = request.query_params.get("key")
        if not key:
            raise _Problem(400, "which aggregate? (?key=...)")
        if not await reader.exists(key):
            raise _Problem(404, f"no aggregate {key!r} in this store")
        return key

    def wanted_seq(request: Request, last: int) -> int:
        raw = request.query_params.get("seq")
        if raw in (None, ""):
            return last
        try:
            seq = int(raw)
        except ValueError:
            raise _Problem(400, f"seq must be a number, not {raw!r}") from None
        if not 0 <= seq <= last:
            raise _Problem(404, f"no event {seq} (events 1 to {last})")
        return seq

    def wanted_filter(request: Request) -> str:
        show = request.query_params.get("show") or "all"
        if show not in FILTERS:
            raise _Problem(400, f"show must be one of {', '.join(FILTERS)}")
        return show

    async def timeline_context(key: str, show: str) -> dict[str, Any]:
        last = await reader.last_seq(key)
        first = max(0, last - TIMELINE_LIMIT)
        events = await reader.get_events(key, after=first)
        live = await reader.live(key)
        rows = [_commit_row(e) for e in events] + _live_rows(live)
        rows.sort(key=lambda r: (r["timestamp"], r["seq"] or 0), reverse=True)
        counts = {name: sum(1 for r in rows if _matches(r, name)) for name in FILTERS}
        return {"key": key, "rows": [r for r in rows if _matches(r, show)], "counts": counts, "show": show,
                "last_seq": last, "hidden": first, "filters": FILTERS}

    async def state_context(key: str, seq: int) -> dict[str, Any]:
        try:
            step = await reader.step(key, seq)
        except HistoryError as exc:
            raise _Problem(404, str(exc)) from None
        _, initial_source = await reader.initial_state(key)
        stored = await reader.stored_state(key) if step.last_seq == 0 else None
        return {"key": key, "step": step, "initial_source": initial_source, "stored": stored}

    async def live_context(key: str) -> dict[str, Any]:
        return {"key": key, "runtimes": _runtimes(await reader.live(key))}

    async def index(request: Request) -> Response:
        return render("index.html", aggregates=await reader.aggregates(), key=None)

    async def aggregate(request: Request) -> Response:
        key = await checked_key(request)
        show = wanted_filter(request)
        timeline = await timeline_context(key, show)
        seq = wanted_seq(request, timeline["last_seq"])
        context = {**timeline, **await state_context(key, seq), **await live_context(key)}
        return render("aggregate.html", aggregates=await reader.aggregates(), seq=seq,
                      lineage=await reader.lineage(key), **context)

    async def aggregates_fragment(request: Request) -> Response:
        return render("_aggregates.html", aggregates=await reader.aggregates(), key=request.query_params.get("key"))

    async def timeline_fragment(request: Request) -> Response:
        key = await checked_key(request)
        timeline = await timeline_context(key, wanted_filter(request))
        seq = wanted_seq(request, timeline["last_seq"])
        return render("_timeline.html", seq=seq, **timeline)

    async def state_fragment(request: Request) -> Response:
        key = await checked_key(request)
        seq = wanted_seq(request, await reader.last_seq(key))
        return render("_state.html", seq=seq, **await state_context(key, seq))

    async def live_fragment(request: Request) -> Response:
        key = await checked_key(request)
        return render("_live.html", **await live_context(key))

    async def stream(request: Request) -> Response:
        key = request.query_params.get("key") or None

        async def events() -> AsyncIterator[str]:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + stream_seconds
            seen: dict[str, Any] = {}
            yield "retry: 1000\n\n"
            tick = 0
            while True:
                try:
                    signals = await _signals(reader, key, with_aggregates=tick % 4 == 0)
                except Exception as exc:  # a store hiccup: say so, keep watching
                    signals = [("problem", {"error": type(exc).__name__})]
                for name, value in signals:
                    if seen.get(name) != value:
                        seen[name] = value
                        yield f"event: {name}\ndata: {json.dumps(value)}\n\n"
                if loop.time() >= deadline:
                    return
                tick += 1
                if tick % max(1, round(15 / poll_interval)) == 0:
                    yield ": still here\n\n"  # a comment: proxies keep the stream open
                await asyncio.sleep(poll_interval)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    async def handle(request: Request, view: Any) -> Response:
        try:
            return await view(request)  # type: ignore[no-any-return]
        except _Problem as exc:
            return problem(exc.status, exc.message)
        except (InspectError, ClpError) as exc:  # a store that cannot be read, a corrupt event...
            return problem(500, f"{type(exc).__name__}: {exc}")

    def route(path: str, view: Any) -> Route:
        async def endpoint(request: Request) -> Response:
            return await handle(request, view)

        return Route(path, endpoint, methods=["GET"])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await reader.close()

    app = Starlette(
        routes=[
            route("/", index),
            route("/aggregate", aggregate),
            route("/fragment/aggregates", aggregates_fragment),
            route("/fragment/timeline", timeline_fragment),
            route("/fragment/state", state_fragment),
            route("/fragment/live", live_fragment),
            route("/stream", stream),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.reader = reader
    return Guard(app, token=token, allowed_hosts=allowed_hosts)


class _Problem(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def _signals(reader: StoreReader, key: str | None, *, with_aggregates: bool) -> list[tuple[str, Any]]:
    """What a page watches: the aggregate's last sequence number and a digest of its live
    document; the list of aggregates (with their counts), less often, on every page."""
    signals: list[tuple[str, Any]] = []
    if key is not None:
        signals.append(("commit", {"seq": await reader.last_seq(key)}))
        live = await reader.live(key)
        digest = hashlib.sha256(_json(live).encode()).hexdigest()[:16] if live else ""
        signals.append(("live", {"rev": digest}))
    if not with_aggregates:
        return signals
    aggregates = [[a.key, a.events, a.live] for a in await reader.aggregates()]
    signals.append(("aggregates", {"rev": hashlib.sha256(_json(aggregates).encode()).hexdigest()[:16]}))
    return signals
