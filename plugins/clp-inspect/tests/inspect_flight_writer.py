"""Writes a SQLite store the way examples/flight_booking.py runs, for the inspector's tests.

``python inspect_flight_writer.py fill DB``: searches, two bookings denied (one with a staged
suggestion that is rejected, one for a missing payment that an AI proposal fills with a
``<script>`` payload, accepted and committed), a booking over the passenger limit denied, a
search committed with the wrong transition and an unknown intent (two errors), a second
search, and finally a pending booking whose staged AI proposal is hostile markup, left
unaccepted.
``python inspect_flight_writer.py commit DB``: another process commits one more booking.

Both run the example's contract (imported from examples/flight_booking.py) with
``event_store=sqlite`` and a :class:`clp_inspect.LiveInspector` publishing to the same file.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from typing import Any

from clp_inspect import LiveInspector

import clp_core as clp

ROOT = Path(__file__).resolve().parents[3]
KEY = "flights:1"
SCRIPT = "<script>alert(1)</script>"
HOSTILE = '<img src=x onerror="alert(2)"><script>alert(3)</script>'


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("clp_inspect_flight_example", ROOT / "examples" / "flight_booking.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _example()
INITIAL = {"flights": example.CATALOG, "bookings": []}


def _provider(intent: Any) -> dict[str, Any]:
    """Stands in for a language model: it fills a missing payment, with untrusted text."""
    if intent.name == "bookFlight" and not intent.payload.get("payment"):
        return {"payment": SCRIPT if intent.payload.get("flight") == "CL101" else HOSTILE}
    return {}


def runtime(db: str) -> clp.Runtime:
    url = f"sqlite:///{db}"  # sqlite:////abs/path.db for an absolute path
    inspector = LiveInspector(url, KEY, initial_state=INITIAL)
    return clp.create_runtime(example.contract, _provider, storage_key=KEY, event_store=url,
                              initial_state=INITIAL, middleware=[inspector])


async def _denied(call: Any) -> None:
    try:
        await call
    except clp.errors.ClpError:
        return
    raise AssertionError("expected a refusal")


async def fill(db: str) -> None:
    async with runtime(db) as rt:
        await rt.execute("searchFlights", {"from": "LIS", "to": "BER", "date": "2026-06-01"})      # event 1
        await rt.dispatch("bookFlight", {"flight": "CL205", "passengers": 3, "payment": "card-4242"})
        await _denied(rt.commit())                                   # seat_availability, suggests 1
        await rt.reject_proposal("bookFlight")
        await rt.dispatch("bookFlight", {"flight": "CL101", "passengers": 3})
        await _denied(rt.commit())                                   # payment_present
        await rt.propose("bookFlight")                               # the AI fills the payment
        await rt.accept_proposal("bookFlight")
        await rt.commit()                                            # event 2, payload with <script>
        await _denied(rt.execute("bookFlight", {"flight": "CL300", "passengers": 9, "payment": "iban"}))
        await rt.dispatch("searchFlights", {"from": "LIS", "to": "OSL", "date": "2026-06-01"})
        await _denied(rt.commit("book"))                             # no matching transition: an error
        await _denied(rt.dispatch("cancelFlight", {}))               # unknown intent: an error, not logged
        await rt.commit()                                            # event 3
        await rt.dispatch("bookFlight", {"flight": "CL300", "passengers": 2})
        await rt.propose("bookFlight")                               # staged, hostile, left pending
        assert rt.get_state("flights.CL101.seats") == 1


async def commit_one(db: str) -> int:
    async with runtime(db) as rt:
        entry = await rt.execute("bookFlight", {"flight": "CL300", "passengers": 2, "payment": "card-1"})
        assert entry.transition_result.permitted
        return len(rt.get_state("bookings"))


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "fill":
        asyncio.run(fill(path))
    elif mode == "commit":
        print(asyncio.run(commit_one(path)))
    else:
        raise SystemExit("usage: inspect_flight_writer.py fill|commit DB")
