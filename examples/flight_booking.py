"""Flight booking: the second example of CLP 0.1, in Python, with deep state.

Two intents, ``searchFlights`` and ``bookFlight``. Guards check, in order: a known flight,
1 to ``MAX_PASSENGERS`` passengers per booking, enough free seats on the flight (suggesting
the number that is left), and a payment method present. Denied bookings change nothing; the
flow recovers by rejecting a suggestion or dispatching a corrected intent.
Run: ``python examples/flight_booking.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TypedDict

import clp_core as clp

MAX_PASSENGERS = 6

CATALOG = {
    "CL101": {"from": "LIS", "to": "BER", "date": "2026-06-01", "seats": 4, "price": 120},
    "CL205": {"from": "LIS", "to": "BER", "date": "2026-06-01", "seats": 1, "price": 95},
    "CL300": {"from": "LIS", "to": "OSL", "date": "2026-06-01", "seats": 9, "price": 180},
}


contract = clp.Contract(state={"flights": {}, "search": {"query": "object", "results": "array"},
                               "bookings": "array"})


# "from" is a Python keyword: a TypedDict's functional form can still name the field
SearchFlights = contract.intent("searchFlights")(TypedDict("SearchFlights", {"from": str, "to": str, "date": dt.date}))
contract.intent("bookFlight", inputs={"flight": "string", "passengers": "integer", "payment": "string?"},
                description="Book seats on a flight")


def booking(ctx: clp.Ctx) -> bool:
    # on= scopes the guards below to bookFlight; this check keeps them exact on runtimes
    # that do not scope guards yet (clp-core 0.2)
    return ctx.intent.name == "bookFlight"


def seats_left(ctx: clp.Ctx) -> int:
    return ctx.state.get(clp.path("flights", ctx.intent.payload["flight"], "seats")) or 0


@contract.guard(on="bookFlight")
def known_flight(ctx: clp.Ctx) -> bool:
    return booking(ctx) and ctx.intent.payload["flight"] not in ctx.state["flights"]


@contract.guard(on="bookFlight")
def max_passengers(ctx: clp.Ctx) -> bool:
    return booking(ctx) and not 1 <= ctx.intent.payload["passengers"] <= MAX_PASSENGERS


@contract.guard(on="bookFlight", suggest=lambda ctx: {"passengers": seats_left(ctx)})
def seat_availability(ctx: clp.Ctx) -> bool:
    return booking(ctx) and ctx.intent.payload["passengers"] > seats_left(ctx)


@contract.guard(on="bookFlight")  # never suggested: a guard must not invent a payment
def payment_present(ctx: clp.Ctx) -> bool:
    return booking(ctx) and not ctx.intent.payload.get("payment")


@contract.transition(on="searchFlights", when=lambda ctx: ctx.intent.name == "searchFlights")
def search(ctx: clp.Ctx) -> dict:
    query = ctx.intent.payload
    found = [
        flight_id
        for flight_id, flight in ctx.state["flights"].items()
        if (flight["from"], flight["to"], flight["date"]) == (query["from"], query["to"], query["date"])
    ]
    return {"search.query": dict(query), "search.results": found}


@contract.transition(on="bookFlight", when=lambda ctx: booking(ctx) and ctx.intent.complete)
def book(ctx: clp.Ctx) -> dict:
    p = ctx.intent.payload
    price = ctx.state.get(clp.path("flights", p["flight"], "price"))
    return {
        clp.path("flights", p["flight"], "seats"): seats_left(ctx) - p["passengers"],
        "bookings": clp.ops.push({"flight": p["flight"], "passengers": p["passengers"],
                                  "total": price * p["passengers"]}),
    }


async def try_commit(runtime: clp.Runtime) -> bool:
    try:
        entry = await runtime.commit()
    except clp.errors.GuardDeniedError as denied:
        print(f"  DENIED: {denied}; suggestion: {denied.suggestion}")
        return False
    print(f"  committed {entry.transition_result.name}: " + ", ".join(f"{c.op} {c.path}" for c in entry.state_diff))
    return True


async def main() -> None:
    runtime = clp.create_runtime(contract, initial_state={"flights": CATALOG, "bookings": []})
    runtime.subscribe("flights.CL101.seats",
                      lambda state: print(f"  (subscriber) CL101 has {state.path('flights.CL101.seats')} seats left"))

    print("1. search LIS -> BER on 2026-06-01")
    await runtime.dispatch("searchFlights", {"from": "LIS", "to": "BER", "date": "2026-06-01"})
    await try_commit(runtime)
    print(f"  results: {runtime.get_state('search.results')}")

    print("2. book CL205 (the cheapest) for 3 passengers")
    await runtime.dispatch("bookFlight", {"flight": "CL205", "passengers": 3, "payment": "card-4242"})
    if not await try_commit(runtime):
        print(f"  staged from {runtime.staged_proposal.source}: {dict(runtime.staged_proposal.values)}")
        await runtime.reject_proposal("bookFlight")
        print("  rejected: the group travels together, so try CL101 instead")

    print("3. book CL101 for 3 passengers, payment forgotten")
    await runtime.dispatch("bookFlight", {"flight": "CL101", "passengers": 3})
    if not await try_commit(runtime):
        print("  recover: dispatch the booking again, with a payment method")
        await runtime.dispatch("bookFlight", {"flight": "CL101", "passengers": 3, "payment": "card-4242"})
        assert await try_commit(runtime)

    print(f"4. book CL300 for {MAX_PASSENGERS + 3} passengers")
    try:
        await runtime.execute("bookFlight", {"flight": "CL300", "passengers": MAX_PASSENGERS + 3, "payment": "iban"})
    except clp.errors.GuardDeniedError as denied:
        outcomes = runtime.get_log()[-1].guard_outcomes
        print(f"  DENIED: {denied}; guards run: {[(g.name, g.denied) for g in outcomes]}")

    print(f"bookings: {runtime.get_state('bookings')}")
    print("seats left: " + ", ".join(f"{k}={v['seats']}" for k, v in runtime.get_state("flights").items()))
    assert runtime.get_state("flights.CL101.seats") == 1
    assert len(runtime.get_state("bookings")) == 1


if __name__ == "__main__":
    asyncio.run(main())
