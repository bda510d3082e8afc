"""The page's Python: a CLP counter persisted with LocalStorageAdapter() on js.localStorage.

Run by index.html with Pyodide's runPythonAsync; the page calls start(), increment(n) and
checks(). Each page load is a new Python interpreter, so start() hydrates from localStorage only.
"""

import json
import sys
import uuid

import js
from pyodide.ffi import jsnull  # what JavaScript's null (a missing item) becomes

import clp_core as clp
from clp_core.errors import CorruptStateError, StorageError
from clp_core.storage.localstorage import LocalStorageAdapter

KEY = "clp:counter"
INTERPRETER = uuid.uuid4().hex  # new with every page load: tells the test the reload restarted Python

contract = clp.create_contract(
    intents={"increment": {"inputs": {"amount": "number?"}}},
    state={"count": "number"},
    transitions={"apply": {"when": lambda ctx: ctx.intent.complete,
                           "effects": lambda ctx: {"count": (ctx.state.get("count") or 0)
                                                   + (ctx.intent.payload.get("amount") or 1)}}},
)
runtime = clp.create_runtime(contract, storage=LocalStorageAdapter(), storage_key=KEY,
                             initial_state={"count": 0})


def show() -> None:
    js.document.getElementById("count").textContent = str(runtime.get_state("count"))
    stored = js.localStorage.getItem("clp:" + KEY)
    js.document.getElementById("stored").textContent = "(nothing)" if stored in (None, jsnull) else stored


async def start():
    await runtime.hydrate()
    hydrated = runtime.get_state("count")
    show()
    return {"hydrated": hydrated, "python": sys.version.split()[0], "platform": sys.platform,
            "clp": clp.__version__, "adapter": type(runtime.storage).__name__,
            "backend": runtime.storage.name, "interpreter": INTERPRETER}


async def increment(times):
    for _ in range(int(times)):
        await runtime.execute("increment", {})
    show()
    return runtime.get_state("count")


async def checks():
    """Quota and corruption against the real localStorage, on keys of their own."""
    results = {}
    scratch = LocalStorageAdapter("clp-test:")
    try:
        await scratch.save("too-big", {"blob": "x" * 12_000_000})  # localStorage holds ~5 MB per origin
        results["quota"] = "saved (no quota error)"
    except StorageError as exc:
        results["quota"] = f"{type(exc).__name__}: {exc}"[:400]
    results["quota_key_absent"] = js.localStorage.getItem("clp-test:too-big") is jsnull
    js.localStorage.setItem("clp-test:corrupt", "{not json")
    try:
        await scratch.load("corrupt")
        results["corrupt"] = "loaded (no error)"
    except CorruptStateError as exc:
        results["corrupt"] = f"{type(exc).__name__}: {exc}"
    await scratch.delete("corrupt")
    results["corrupt_deleted"] = js.localStorage.getItem("clp-test:corrupt") is jsnull
    results["count_after_checks"] = json.loads(js.localStorage.getItem("clp:" + KEY))["data"]["document"]["state"]
    return results
