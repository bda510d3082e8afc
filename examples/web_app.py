"""A web application serving many aggregates by key: one ``clp.Runtimes`` for the whole app.

    POST /counters/{key}/increment   {"amount": 2}    commit on counter <key>
    GET  /counters/{key}                              its state

The runtimes share one SQLite adapter; at most ``max_live`` stay in memory, the others are
hydrated from storage again when a request asks for them. Run it with a server::

    uvicorn examples.web_app:app          # (from the repository root; pip install uvicorn)

or, as here when run as a script, against Starlette's in-process test client.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import clp_core as clp
from clp_core.errors import ClpError, GuardDeniedError

counter = clp.create_contract(
    intents={"increment": {"inputs": {"amount": "number?"}}},
    state={"count": "number"},
    guards=[{"name": "no_negative", "deny": lambda ctx: (ctx.intent.payload.get("amount") or 0) < 0}],
    transitions={"apply": {"effects": lambda ctx: {
        "count": (ctx.state.get("count") or 0) + (ctx.intent.payload.get("amount") or 1)}}},
)

@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # one home for every counter, opened at start-up, closed (drained) at shutdown
    storage = os.environ.get("CLP_WEB_STORAGE", "sqlite:///counters.db")
    max_live = int(os.environ.get("CLP_WEB_MAX_LIVE", "1000"))
    async with clp.Runtimes(counter, storage=storage, max_live=max_live, log_limit=100) as runtimes:
        app.state.runtimes = runtimes
        yield


async def increment(request: Request) -> JSONResponse:
    key = request.path_params["key"]
    body = await request.json() if await request.body() else {}
    try:
        entry = await request.app.state.runtimes.execute(f"counter:{key}", "increment", body)
    except GuardDeniedError as denied:
        return JSONResponse({"key": key, "refused": str(denied)}, status_code=409)
    except ClpError as error:
        return JSONResponse({"key": key, "error": str(error)}, status_code=400)
    return JSONResponse({"key": key, "changed": [change.path for change in entry.state_diff]})


async def show(request: Request) -> JSONResponse:
    key = request.path_params["key"]
    async with request.app.state.runtimes.get(f"counter:{key}") as runtime:
        return JSONResponse({"key": key, "state": runtime.get_state()})


app = Starlette(routes=[
    Route("/counters/{key}/increment", increment, methods=["POST"]),
    Route("/counters/{key}", show, methods=["GET"]),
], lifespan=lifespan)


def main() -> None:
    from starlette.testclient import TestClient

    os.environ.setdefault("CLP_WEB_MAX_LIVE", "10")
    with TestClient(app) as client:  # runs the lifespan: Runtimes opened, then closed on exit
        runtimes = app.state.runtimes
        for n in range(50):  # 50 counters; only max_live of them stay in memory
            client.post(f"/counters/c{n}/increment", json={"amount": n})
        print("increment c7:", client.post("/counters/c7/increment", json={"amount": 3}).json())
        print("refused:", client.post("/counters/c7/increment", json={"amount": -1}).json()["refused"])
        print("c7:", client.get("/counters/c7").json())
        print(f"50 counters, {len(runtimes)} live (max_live {runtimes.max_live}), {runtimes.evicted} evicted")
        print("c0 after eviction:", client.get("/counters/c0").json()["state"])
    with TestClient(app) as client:  # a restart: the state is in storage
        print("after restart, c49:", client.get("/counters/c49").json()["state"])


if __name__ == "__main__":
    main()
