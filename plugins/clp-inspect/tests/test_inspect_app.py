"""The inspector's web application against a SQLite store the flight example filled:
aggregates, timeline, filters, the state as of any event, live runtimes, live updates, and
safety (escaping, CSP, GET only, Host and token checks, never writing)."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from clp_inspect import BindError, InspectError, LiveInspector, StoreReader, check_bind
from clp_inspect._security import CSP, cookie_name
from clp_inspect.app import create_app
from typer.testing import CliRunner

import clp_core as clp
from clp_core.cli import build_app

TOKEN = "k3y-for-the-tests-0123456789"


def url(path: Path) -> str:
    return f"sqlite:///{path}"


@contextlib.asynccontextmanager
async def client_for(db: Path, keys: tuple[str, ...] = (), **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the ASGI app over ``db`` (the reader closed afterwards)."""
    reader = StoreReader(url(db), keys=keys)
    transport = httpx.ASGITransport(app=create_app(reader, **options))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client
    finally:
        await reader.close()


@pytest.fixture
async def client(flight_db: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(flight_db) as c:
        yield c


def state_json(page: str, element_id: str = "state-json") -> Any:
    found = re.search(rf'<pre class="json" id="{element_id}">(.*?)</pre>', page, re.DOTALL)
    assert found, page
    return json.loads(html.unescape(found.group(1)))


def rows(page: str) -> list[str]:
    return re.findall(r'<tr class="row (\w+)', page)


def dump(db: Path) -> list[Any]:
    """Everything the file holds, through a read-only connection."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        return [(t, sorted(conn.execute(f"SELECT * FROM {t}").fetchall())) for t in tables]
    finally:
        conn.close()


# -- what the page shows -------------------------------------------------------------------


async def test_the_index_lists_the_aggregates(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert 'href="/aggregate?key=flights%3A1"' in page.text
    assert "__clp_inspect__" not in page.text  # the reserved keys are not aggregates
    assert '<span class="dot live"' in page.text  # a runtime published live data for it


async def test_the_timeline_shows_commits_denials_and_errors_newest_first(client: httpx.AsyncClient) -> None:
    page = (await client.get("/aggregate", params={"key": "flights:1"})).text
    assert rows(page) == ["commit", "error", "error", "denial", "commit", "denial", "denial", "commit"]
    assert re.findall(r'data-seq="(\d+)"', page)[:3] == ["3", "2", "1"]
    assert page.count('class="guard denied"') == 3
    for guard in ("seat_availability", "payment_present", "max_passengers"):  # each denial's guard, highlighted
        assert f'<span class="guard denied" title="denied">{guard}</span>' in page
    assert '<span class="badge src-ai" title="proposal source">ai</span>' in page  # event 2's payment came from AI
    assert "suggested <code>{&#34;passengers&#34;: 1}</code>" in page  # the seat guard's suggestion
    assert '<span class="path">flights.<wbr>CL101.<wbr>seats</span> <code>1</code>' in page
    assert "UnknownIntentError: Unknown intent cancelFlight" in page
    assert "No matching transition" in page
    assert 'class="filter f-all active" data-show="all"' in page
    counts = dict(re.findall(r'data-show="(\w+)"[^>]*>\w+ <span class="n">(\d+)</span>', page, re.DOTALL))
    assert counts == {"all": "8", "commits": "3", "denials": "3", "errors": "2", "replays": "0"}


@pytest.mark.parametrize("show, expected", [
    ("commits", ["commit"] * 3), ("denials", ["denial"] * 3), ("errors", ["error"] * 2), ("replays", []),
])
async def test_denials_and_errors_are_filterable(client: httpx.AsyncClient, show: str, expected: list[str]) -> None:
    page = await client.get("/fragment/timeline", params={"key": "flights:1", "show": show})
    assert page.status_code == 200
    assert rows(page.text) == expected
    assert f'class="filter f-{show} active"' in page.text
    assert (await client.get("/fragment/timeline", params={"key": "flights:1", "show": "bogus"})).status_code == 400


async def test_the_state_as_of_any_event_and_the_diff_from_the_one_before(client: httpx.AsyncClient) -> None:
    latest = state_json((await client.get("/aggregate", params={"key": "flights:1"})).text)
    assert latest["flights"]["CL101"]["seats"] == 1 and len(latest["bookings"]) == 1

    first = (await client.get("/fragment/state", params={"key": "flights:1", "seq": 1})).text
    state = state_json(first)
    assert state["flights"]["CL101"]["seats"] == 4 and state["bookings"] == []
    assert state["search"]["results"] == ["CL101", "CL205"]
    assert 'data-seq="1"' in first and "Diff from event 0" in first

    second = (await client.get("/fragment/state", params={"key": "flights:1", "seq": 2})).text
    diff = re.findall(r'<td class="path">(.*?)</td>\s*<td class="before"><code>([^<]*)</code></td>'
                      r'<td class="after"><code>([^<]*)</code></td>', second)
    assert [(p.replace("<wbr>", ""), html.unescape(b), html.unescape(a)) for p, b, a in diff] == [
        ("flights.CL101.seats", "4", "1"),
        ("bookings", "[]", '[{"flight": "CL101", "passengers": 3, "total": 360}]'),
    ]

    initial = state_json((await client.get("/fragment/state", params={"key": "flights:1", "seq": 0})).text)
    assert initial["flights"]["CL101"]["seats"] == 4 and "search" not in initial  # from the live runtime

    missing = await client.get("/fragment/state", params={"key": "flights:1", "seq": 9})
    assert missing.status_code == 404 and "no event 9" in missing.text
    assert (await client.get("/fragment/state", params={"key": "flights:1", "seq": "x"})).status_code == 400
    assert (await client.get("/aggregate", params={"key": "nope"})).status_code == 404
    assert (await client.get("/aggregate")).status_code == 400


async def test_the_reader_answers_what_state_at_answers(flight_db: Path, writer: ModuleType) -> None:
    reader = StoreReader(url(flight_db))
    try:
        async with clp.create_runtime(writer.example.contract, storage_key="flights:1", event_store=url(flight_db),
                                      initial_state=writer.INITIAL) as runtime:
            for seq in range(4):
                assert await reader.state_at("flights:1", seq) == await runtime.state_at(seq)
        with pytest.raises(clp.errors.HistoryError, match="no event 4"):
            await reader.state_at("flights:1", 4)
    finally:
        await reader.close()


async def test_the_live_panel_shows_the_pending_intent_and_the_staged_proposal(client: httpx.AsyncClient) -> None:
    page = (await client.get("/fragment/live", params={"key": "flights:1"})).text
    pending = re.search(r'<dd class="pending">(.*?)</dd>', page, re.DOTALL)
    staged = re.search(r'<dd class="staged">(.*?)</dd>', page, re.DOTALL)
    assert pending and staged
    assert "<b>bookFlight</b>" in pending.group(1) and "CL300" in pending.group(1)
    assert "&lt;img src=x onerror=\\&#34;alert(2)\\&#34;&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in staged.group(1)
    assert '<span class="badge src-ai">ai</span>' in staged.group(1)


# -- safety ----------------------------------------------------------------------------------


async def test_untrusted_text_is_escaped_everywhere(client: httpx.AsyncClient) -> None:
    pages = [await client.get(path, params=params) for path, params in [
        ("/", {}), ("/aggregate", {"key": "flights:1"}), ("/aggregate", {"key": "flights:1", "seq": 2}),
        ("/fragment/timeline", {"key": "flights:1"}), ("/fragment/state", {"key": "flights:1", "seq": 2}),
        ("/fragment/live", {"key": "flights:1"}), ("/fragment/aggregates", {}),
    ]]
    for page in pages:
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img" not in page.text and "onerror=\"" not in page.text
        scripts = re.findall(r"<script\b[^>]*>", page.text)
        assert all(re.fullmatch(r'<script src="/static/[\w.]+\.js\?v=[\d.]+" defer>', s) for s in scripts), scripts
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1].text  # shown, as text


async def test_a_hostile_storage_key_and_payload_are_escaped(tmp_path: Path) -> None:
    key = '<script>alert("key")</script>'

    def note(ctx: clp.Context) -> dict[str, Any]:  # the text also names a state path: the diff shows it
        text = ctx.intent.payload["text"]
        return {"text": text, f"seen.{text.replace('.', '_')}": True}

    contract = clp.create_contract(intents={"note": {"inputs": {"text": "string"}}},
                                   transitions={"note": {"effects": note}})
    store = url(tmp_path / "hostile.db")
    async with clp.create_runtime(contract, storage_key=key, event_store=store,
                                  middleware=[LiveInspector(store, key)]) as runtime:
        await runtime.execute("note", {"text": "</pre><script>alert(1)</script><img src=x onerror=alert(2)>"})
        with pytest.raises(clp.errors.ClpError):
            await runtime.execute("note", {"text": 5})  # a validation error, its message quoting the value
    async with client_for(tmp_path / "hostile.db") as client:
        pages = [await client.get("/"), await client.get("/aggregate", params={"key": key}),
                 await client.get("/fragment/state", params={"key": key, "seq": 1})]
        for page in pages:
            assert page.status_code == 200
            assert "<script>alert" not in page.text and "<img" not in page.text
        for page in pages[:2]:
            assert "&lt;script&gt;alert(&#34;key&#34;)&lt;/script&gt;" in page.text
        assert '<td class="path">seen.<wbr>&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img' in pages[2].text


async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    for response in [await client.get("/"), await client.get("/static/inspect.js"),
                     await client.get("/aggregate", params={"key": "x"}), await client.post("/"),
                     await client.get("/", headers={"host": "evil.example"})]:
        assert response.headers["content-security-policy"] == CSP
        assert "default-src 'self'" in CSP and "script-src 'self'" in CSP and "'unsafe" not in CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("path", ["/", "/aggregate?key=flights:1", "/stream?key=flights:1", "/static/inspect.js"])
async def test_only_get_and_head_are_allowed(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    if not path.startswith("/stream"):  # (a stream does not end)
        assert (await client.head(path)).status_code == 200


async def test_a_foreign_host_header_is_refused(client: httpx.AsyncClient) -> None:
    assert (await client.get("/", headers={"host": "attacker.example:8765"})).status_code == 403  # DNS rebinding
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765"):
        assert (await client.get("/", headers={"host": host})).status_code == 200


async def test_with_a_token_every_request_must_carry_it(flight_db: Path) -> None:
    async with client_for(flight_db, token=TOKEN, allowed_hosts=None) as client:
        assert (await client.get("/")).status_code == 403
        assert (await client.get("/static/htmx.min.js")).status_code == 403
        assert (await client.get("/stream", params={"key": "flights:1"})).status_code == 403
        assert (await client.get("/", params={"token": TOKEN[:-1] + "x"})).status_code == 403

        welcome = await client.get("/aggregate", params={"key": "flights:1", "token": TOKEN})
        assert welcome.status_code == 303
        assert welcome.headers["location"] == "/aggregate?key=flights%3A1"  # the token leaves the address bar
        cookie = welcome.headers["set-cookie"]
        assert cookie.startswith(f"{cookie_name(TOKEN)}={TOKEN};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        # the cookie carries it from now on
        assert (await client.get("/aggregate", params={"key": "flights:1"})).status_code == 200
        assert (await client.get("/static/htmx.min.js")).status_code == 200

        client.cookies.clear()
        client.cookies.set(cookie_name(TOKEN), "wrong-token-wrong-token")
        assert (await client.get("/")).status_code == 403
        # with a token there is no Host check, but the token is still needed
        assert (await client.get("/", headers={"host": "anywhere.example"})).status_code == 403

    with pytest.raises(BindError, match="at least 16"):
        create_app(StoreReader(url(flight_db)), token="short")


def test_serving_beyond_loopback_needs_a_token() -> None:
    for host in ("127.0.0.1", "127.5.0.1", "::1", "[::1]", "localhost"):
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(BindError, match="refusing to serve on"):
            check_bind(host, None)
        check_bind(host, TOKEN)
    with pytest.raises(BindError, match=r"A-Z a-z 0-9"):
        check_bind("0.0.0.0", "a token with spaces in it")


def test_the_command_refuses_a_public_bind_without_a_token(tmp_path: Path) -> None:
    missing = tmp_path / "never-created.db"
    result = CliRunner().invoke(build_app(), ["inspect", url(missing), "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "refusing to serve on 0.0.0.0" in result.output and "--token" in result.output
    result = CliRunner().invoke(build_app(), ["inspect", url(missing)])
    assert result.exit_code == 2 and "no such SQLite file" in result.output
    assert not missing.exists()


def test_the_command_is_registered_through_the_entry_point() -> None:
    result = CliRunner().invoke(build_app(), ["inspect", "--help"])
    assert result.exit_code == 0
    for option in ("--event-store", "--port", "--host", "--token", "--key"):
        assert option in result.output


async def test_it_never_writes(flight_db: Path, tmp_path: Path) -> None:
    before = dump(flight_db)
    async with client_for(flight_db) as client:
        for path in ("/", "/aggregate?key=flights:1", "/aggregate?key=flights:1&seq=1", "/fragment/live?key=flights:1"):
            assert (await client.get(path)).status_code == 200
    assert dump(flight_db) == before

    reader = await StoreReader(url(flight_db)).open()
    try:
        for proxy, writes in ((reader.storage, ("save", "save_versioned", "delete")),
                              (reader.events, ("append", "save_snapshot"))):
            for name in writes:
                assert not hasattr(proxy, name), name
    finally:
        await reader.close()

    with pytest.raises(InspectError, match="no such SQLite file"):
        await StoreReader(url(tmp_path / "missing.db")).open()
    assert not (tmp_path / "missing.db").exists()

    only_state = tmp_path / "state-only.db"  # a runtime without an event store made this file
    contract = clp.create_contract(intents={"set": {"inputs": {"n": "number"}}},
                                   transitions={"set": {"effects": lambda ctx: {"n": ctx.intent.payload["n"]}}})
    async with clp.create_runtime(contract, storage=url(only_state), storage_key="counter") as runtime:
        await runtime.execute("set", {"n": 7})
    before = dump(only_state)
    async with client_for(only_state) as client:  # storage lists no keys: name one
        assert (await client.get("/")).status_code == 200
    async with client_for(only_state, keys=("counter",)) as client:
        page = await client.get("/aggregate", params={"key": "counter"})
        assert page.status_code == 200
        assert state_json(page.text, "stored-json") == {"n": 7}
    assert dump(only_state) == before  # no clp_events table was created
    assert [t for t, _ in dump(only_state)] == ["clp_state"]


# -- live updates ------------------------------------------------------------------------------


def sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_the_stream_reports_new_commits_while_a_runtime_commits(
    fresh_flight_db: Path, writer: ModuleType
) -> None:
    app = create_app(StoreReader(url(fresh_flight_db)), poll_interval=0.05, stream_seconds=1.2)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:

        async def commit_later() -> int:
            await asyncio.sleep(0.3)
            return await writer.commit_one(str(fresh_flight_db))  # type: ignore[no-any-return]

        response, bookings = await asyncio.gather(
            client.get("/stream", params={"key": "flights:1"}), commit_later())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["content-security-policy"] == CSP
    events = sse(response.text)
    assert [data["seq"] for name, data in events if name == "commit"] == [3, 4]
    assert len([name for name, _ in events if name == "live"]) >= 2  # the committing runtime published too
    assert bookings == 2
    assert response.text.startswith("retry: 1000\n\n")


async def test_a_fork_shows_its_lineage_linked_to_its_parents(tmp_path: Path) -> None:
    import clp_core as clp

    store = url(tmp_path / "chats.db")
    contract = clp.create_contract(intents={"say": {"inputs": {"text": "string"}}},
                                   transitions={"say": {"effects": lambda ctx: {"said": ctx.intent.payload["text"]}}})
    async with clp.create_runtime(contract, storage_key="chat:1", event_store=store) as root:
        for text in ("a", "b", "c"):
            await root.execute("say", {"text": text})
        child = await root.fork(at=2, key="chat:2")
        await child.execute("say", {"text": "<b>x</b>"})
        grandchild = await child.fork(at=1, key="chat:3")
        await grandchild.execute("say", {"text": "y"})
    async with client_for(tmp_path / "chats.db") as client:
        page = (await client.get("/aggregate", params={"key": "chat:3"})).text
        plain_root = (await client.get("/aggregate", params={"key": "chat:1"})).text
    assert 'id="lineage"' in page and 'id="lineage"' not in plain_root
    found = re.findall(r'<a href="/aggregate\?key=([^&"]+)&amp;seq=(\d+)">', page)
    assert found == [("chat%3A2", "1"), ("chat%3A1", "2")]
