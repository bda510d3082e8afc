"""The transactional outbox: messages a transition emits are saved with the state change,
delivered after the commit (at least once, stable ids, retried), never for a commit that did
not land, and delivered after a restart when a process died before delivering them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import clp_core as clp
from clp_core.errors import DeliveryError, EffectError, GuardDeniedError, StorageError
from clp_core.storage import FileSystemAdapter, MemoryAdapter, SQLiteAdapter

KEY = "clp:orders"


def shop(emit: Any = None) -> clp.Contract:
    def default_emit(ctx: Any) -> list[Any]:
        return [("paid", {"order": ctx.intent.payload["order"], "total": ctx.state["paid"]}),
                clp.Message("audit", {"order": ctx.intent.payload["order"]})]

    return clp.create_contract(
        intents={"pay": {"inputs": {"order": "string", "amount": "number"}}},
        state={"paid": "number"},
        guards=[{"name": "positive", "deny": lambda ctx: ctx.intent.payload["amount"] <= 0}],
        transitions={"charge": {
            "effects": lambda ctx: {"paid": (ctx.state.get("paid") or 0) + ctx.intent.payload["amount"]},
            "emit": emit or default_emit,
        }},
    )


class Inbox:
    """Handlers that record what they got, failing the first ``fail`` calls per topic."""

    def __init__(self, fail: int = 0) -> None:
        self.got: list[clp.Message] = []
        self.fail, self.calls = fail, 0

    async def __call__(self, message: clp.Message) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            raise ConnectionError("receiver down")
        self.got.append(message)

    def handlers(self) -> dict[str, Any]:
        return {"paid": self, "audit": self}


DOCUMENTS = {
    "memory": lambda tmp: MemoryAdapter(),
    "file": lambda tmp: FileSystemAdapter(tmp / "files"),
    "sqlite": lambda tmp: SQLiteAdapter(str(tmp / "state.db")),
}


def runtime_on(kind: str, tmp: Path, storage: Any = None, **options: Any) -> clp.Runtime:
    if kind == "events":
        return clp.create_runtime(options.pop("contract", shop()), storage_key=KEY,
                                  event_store=storage or clp.SQLiteEventStore(str(tmp / "events.db")), **options)
    return clp.create_runtime(options.pop("contract", shop()), storage=storage or DOCUMENTS[kind](tmp),
                              storage_key=KEY, **options)


KINDS = [*sorted(DOCUMENTS), "events"]


@pytest.mark.parametrize("kind", KINDS)
async def test_emitted_messages_are_delivered_after_the_commit_with_stable_ids(kind: str, tmp_path: Path) -> None:
    inbox = Inbox()
    runtime = runtime_on(kind, tmp_path, handlers=inbox.handlers())
    entry = await runtime.execute("pay", {"order": "A-1", "amount": 5})
    await runtime.drain()
    assert [(m.topic, dict(m.payload)) for m in inbox.got] == [("paid", {"order": "A-1", "total": 5}),
                                                               ("audit", {"order": "A-1"})]
    assert {m.intent_id for m in inbox.got} == {entry.intent_id}
    assert {m.aggregate for m in inbox.got} == {KEY}
    assert len({m.id for m in inbox.got}) == 2
    delivered = [e for e in runtime.get_log() if e.phase == "deliver"]
    assert sorted(e.detail["message_id"] for e in delivered) == sorted(m.id for m in inbox.got)
    assert runtime.pending_messages() == []
    await runtime.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_no_message_for_a_commit_that_did_not_land(kind: str, tmp_path: Path) -> None:
    inbox = Inbox()
    runtime = runtime_on(kind, tmp_path, handlers=inbox.handlers())
    with pytest.raises(GuardDeniedError):
        await runtime.execute("pay", {"order": "A-1", "amount": 0})
    broken = clp.create_contract(
        intents={"pay": {"inputs": {"order": "string", "amount": "number"}}},
        transitions={"charge": {"effects": lambda ctx: {"paid": 1}, "emit": lambda ctx: 1 / 0}})
    failing = runtime_on(kind, tmp_path, contract=broken, handlers=inbox.handlers())
    with pytest.raises(EffectError):
        await failing.execute("pay", {"order": "A-2", "amount": 3})
    assert failing.get_state("paid") is None  # emit failed: the effects were rolled back
    await runtime.drain()
    await failing.drain()
    assert inbox.got == [] and runtime.pending_messages() == [] and failing.pending_messages() == []


async def test_a_failed_save_delivers_nothing_and_keeps_nothing(tmp_path: Path) -> None:
    class Broken(SQLiteAdapter):
        async def save_versioned(self, key: str, document: Any, expected: int) -> int:
            raise StorageError("disk full", backend="broken", outcome="not_applied")

    inbox = Inbox()
    runtime = clp.create_runtime(shop(), storage=Broken(str(tmp_path / "s.db")), storage_key=KEY,
                                 handlers=inbox.handlers())
    with pytest.raises(StorageError):
        await runtime.execute("pay", {"order": "A-1", "amount": 5})
    await runtime.drain()
    assert inbox.got == [] and runtime.pending_messages() == []


@pytest.mark.parametrize("kind", KINDS)
async def test_deliveries_are_retried_with_back_off(kind: str, tmp_path: Path) -> None:
    inbox = Inbox(fail=2)
    runtime = runtime_on(kind, tmp_path, handlers={"paid": inbox, "audit": lambda m: None})
    await runtime.execute("pay", {"order": "A-1", "amount": 5})
    await runtime.drain()
    assert [m.topic for m in inbox.got] == ["paid"]
    paid = next(e for e in runtime.get_log() if e.phase == "deliver" and e.detail["topic"] == "paid")
    assert paid.detail["attempts"] == 3 and paid.error is None


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "memory"])
async def test_undelivered_messages_are_delivered_after_a_restart(kind: str, tmp_path: Path) -> None:
    down = Inbox(fail=10**6)
    errors: list[BaseException] = []

    class Watch:
        def on_error(self, error: BaseException, phase: str) -> None:
            errors.append(error)

    first = runtime_on(kind, tmp_path, handlers=down.handlers(), delivery_attempts=2, middleware=[Watch()])
    await first.execute("pay", {"order": "A-1", "amount": 5})
    await first.execute("pay", {"order": "A-2", "amount": 6})
    await first.drain()
    assert down.got == [] and len(first.pending_messages()) == 4
    assert all(isinstance(e, DeliveryError) for e in errors) and len(errors) == 4
    failed = [e for e in first.get_log() if e.phase == "deliver"]
    assert len(failed) == 4 and all(e.error and "receiver down" in e.error for e in failed)
    await first.close()

    up = Inbox()
    second = runtime_on(kind, tmp_path, handlers=up.handlers())
    await second.hydrate()  # delivers what storage holds
    await second.drain()
    assert sorted(m.id for m in up.got) == sorted(m.id for m in first.pending_messages())
    assert second.pending_messages() == []
    await second.close()

    third = runtime_on(kind, tmp_path, handlers=up.handlers())
    await third.hydrate()
    await third.drain()
    assert len(up.got) == 4  # recorded as delivered: not again
    await third.close()


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "memory"])
async def test_the_next_commit_records_earlier_deliveries(kind: str, tmp_path: Path) -> None:
    inbox = Inbox()
    storage = DOCUMENTS[kind](tmp_path) if kind != "events" else clp.SQLiteEventStore(str(tmp_path / "e.db"))
    runtime = runtime_on(kind, tmp_path, storage, handlers=inbox.handlers())
    await runtime.execute("pay", {"order": "A-1", "amount": 5})
    await runtime._courier.drain()  # delivered, not yet recorded
    await runtime.execute("pay", {"order": "A-2", "amount": 5})
    await runtime.drain()
    restarted = runtime_on(kind, tmp_path, storage, handlers=inbox.handlers())
    await restarted.hydrate()
    await restarted.drain()
    assert len(inbox.got) == 4 and restarted.pending_messages() == []


async def test_a_message_with_no_handler_is_reported_and_kept(tmp_path: Path) -> None:
    errors: list[tuple[BaseException, str]] = []

    class Watch:
        def on_error(self, error: BaseException, phase: str) -> None:
            errors.append((error, phase))

    runtime = runtime_on("sqlite", tmp_path, handlers={"paid": Inbox()}, middleware=[Watch()])
    await runtime.execute("pay", {"order": "A-1", "amount": 5})
    await runtime.drain()
    assert [m.topic for m in runtime.pending_messages()] == ["audit"]
    assert [(type(e).__name__, phase) for e, phase in errors] == [("DeliveryError", "deliver")]
    assert "no handler for topic 'audit'" in str(errors[0][0])
    document = await SQLiteAdapter(str(tmp_path / "state.db")).load(KEY)
    assert document is not None and [m["topic"] for m in document["outbox"]] == ["audit"]
    assert "no handler" in document["outbox"][0]["error"]


async def test_plugins_receive_messages_through_the_deliver_message_hook() -> None:
    seen: list[str] = []

    class Webhook:
        @clp.hookimpl
        async def deliver_message(self, message: clp.Message) -> None:
            seen.append(message.topic)

    runtime = clp.create_runtime(shop(), middleware=[Webhook()])
    await runtime.execute("pay", {"order": "A-1", "amount": 5})
    await runtime.drain()
    assert seen == ["paid", "audit"] and runtime.pending_messages() == []


async def test_a_replayed_commit_delivers_the_messages_its_lost_save_wrote(tmp_path: Path) -> None:
    class LostReply(SQLiteAdapter):
        lose = True

        async def save_versioned(self, key: str, document: Any, expected: int) -> int:
            version: int = await super().save_versioned(key, document, expected)
            if self.lose:
                self.lose = False
                raise TimeoutError("no reply")
            return version

    inbox = Inbox()
    runtime = clp.create_runtime(shop(), storage=LostReply(str(tmp_path / "s.db")), storage_key=KEY,
                                 handlers=inbox.handlers())
    await runtime.dispatch("pay", {"order": "A-1", "amount": 5})
    with pytest.raises(StorageError):
        await runtime.commit()
    await runtime.drain()
    assert inbox.got == []  # not known to have landed: nothing delivered yet
    entry = await runtime.commit()
    await runtime.drain()
    assert entry.replay and sorted(m.topic for m in inbox.got) == ["audit", "paid"]
    assert runtime.get_state("paid") == 5


async def test_emit_must_return_messages() -> None:
    for bad in ({"topic": "x"}, [("x", 1)], [42], [("", {})]):
        transition = {"effects": lambda ctx: {"n": 1}, "emit": lambda ctx, b=bad: b}
        contract = clp.create_contract(intents={"go": {"inputs": {}}}, transitions={"t": transition})
        runtime = clp.create_runtime(contract)
        with pytest.raises(EffectError, match="emit of t"):
            await runtime.execute("go", {})
        assert runtime.get_state("n") is None
