"""`clp inspect` in a real browser: headless Debian Chromium, driven by playwright-core (npm).

The flight example fills a SQLite store (event_store=sqlite, a LiveInspector publishing to
the same file); `clp inspect` serves it from a subprocess on a free 127.0.0.1 port. The
driver (inspect_drive.cjs, under Node) opens the page, reads the timeline, clicks an event
and moves the slider back to see older states, then has another OS process commit and waits
for the new event to appear without a reload; it filters the denials, and checks that a
proposal holding ``<script>`` and ``<img onerror>`` renders as text with no dialog.
Screenshots go to artifacts/inspect/.

Without chromium, node or playwright-core (scripts/setup-browser installs them) the test
skips, or fails when CLP_REQUIRE_BROWSER is set.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
ARTIFACTS = ROOT / "artifacts" / "inspect"
CACHE = Path(os.environ.get("CLP_BROWSER_CACHE", ROOT / ".browser-cache"))
PLAYWRIGHT_CORE = CACHE / "node_modules" / "playwright-core"
CHROMIUM = Path(os.environ.get("CLP_CHROMIUM", "/usr/bin/chromium"))


def _missing_tools() -> list[str]:
    missing = []
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"{CHROMIUM} (Debian's chromium)")
    if shutil.which("node") is None:
        missing.append("node")
    if not (PLAYWRIGHT_CORE / "package.json").exists():
        missing.append(f"{PLAYWRIGHT_CORE} (npm playwright-core)")
    return missing


@pytest.fixture(scope="module")
def tools() -> None:
    missing = _missing_tools()
    if missing:
        message = f"the browser test needs {', '.join(missing)}: run scripts/setup-browser"
        if os.environ.get("CLP_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(f"{message} (CLP_REQUIRE_BROWSER is set)", pytrace=False)
        pytest.skip(message)


@pytest.fixture
def inspector(tools: None, fresh_flight_db: Path) -> Iterator[str]:
    """`clp inspect sqlite:///...` in a subprocess on a free port; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "clp_core.cli", "inspect", f"sqlite:///{fresh_flight_db}", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or []], daemon=True).start()
    try:
        try:
            first = lines.get(timeout=30)
        except queue.Empty:
            pytest.fail("clp inspect printed nothing in 30 s", pytrace=False)
        found = re.search(r"serving (http://127\.0\.0\.1:\d+/) ", first)
        assert found, first
        yield found.group(1).rstrip("/")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    assert process.returncode in (0, -15), f"clp inspect exited {process.returncode}"


def _drive(base: str, db: Path) -> dict[str, Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("inspect-*.png"):
        old.unlink()
    node = shutil.which("node")
    assert node
    commit = [sys.executable, str(HERE / "inspect_flight_writer.py"), "commit", str(db)]
    process = subprocess.run(
        [node, str(HERE / "inspect_drive.cjs"), base, str(ARTIFACTS)],
        env={**os.environ, "PLAYWRIGHT_CORE": str(PLAYWRIGHT_CORE), "CHROMIUM": str(CHROMIUM),
             "COMMIT_COMMAND": json.dumps(commit)},
        capture_output=True, text=True, timeout=180,
    )
    try:
        result: dict[str, Any] = json.loads(process.stdout)
    except ValueError:
        pytest.fail(f"the driver printed no JSON (exit {process.returncode}):\n{process.stdout[-3000:]}\n"
                    f"{process.stderr[-3000:]}", pytrace=False)
    (ARTIFACTS / "inspect-run.json").write_text(json.dumps(result, indent=1) + "\n")
    if "error" in result:
        console = "\n".join(result.get("console", [])[-30:])
        pytest.fail(f"the browser run failed: {result['error']}\npage console:\n{console}", pytrace=False)
    return result


def test_the_inspector_in_a_real_browser(inspector: str, fresh_flight_db: Path, writer: Any) -> None:
    result = _drive(inspector, fresh_flight_db)

    # the aggregates, and the timeline: 3 commits, 3 denials, 2 errors, newest first
    assert result["aggregates"] == ["flights:1"]
    assert result["title"] == "flights:1 · CLP inspect"
    kinds = [row["kind"] for row in result["timeline"]]
    assert kinds == ["commit", "error", "error", "denial", "commit", "denial", "denial", "commit"]
    assert [row["seq"] for row in result["timeline"] if row["seq"]] == ["3", "2", "1"]
    denial = next(row["text"] for row in result["timeline"] if "CL205" in row["text"])
    assert "seat_availability" in denial and 'suggested {"passengers": 1}' in denial
    assert result["latest"]["seq"] == 3 and result["latest"]["output"] == "3 / 3"

    # a row click shows event 2 with its diff; the slider goes back to event 1: older state
    two, one = result["atTwo"], result["atOne"]
    assert two["state"]["flights"]["CL101"]["seats"] == 1 and len(two["state"]["bookings"]) == 1
    assert two["diff"][0] == ["SET", "flights.CL101.seats", "4", "1"]  # (the op is shown in capitals)
    assert one["seq"] == one["slider"] == 1 and one["output"] == "1 / 3"
    assert one["state"]["flights"]["CL101"]["seats"] == 4 and one["state"]["bookings"] == []
    assert one["state"]["search"]["results"] == ["CL101", "CL205"]
    assert one["url"] == "/aggregate?key=flights%3A1&seq=1"
    assert result["selectedAfterSlider"] == ["1"]

    # another process committed: event 4 arrived, no reload, the view stayed on event 1
    after = result["afterCommit"]
    assert result["commitOutput"] == "2"  # bookings after the commit
    assert [row["seq"] for row in after["timeline"] if row["seq"]] == ["4", "3", "2", "1"]
    assert after["timeline"][0]["seq"] == "4" and "CL300" in after["timeline"][0]["text"]
    assert after["marker"] == "set before the commit" and after["navigations"] == 1
    assert after["view"]["seq"] == 1 and after["view"]["sliderMax"] == 4 and after["view"]["output"] == "1 / 4"
    assert after["eventCount"] == "4"
    assert result["arrivalMs"] < 10_000
    assert after["live"].count("pid ") == 2  # the committing runtime published too

    # denials, filtered, the denying guard highlighted
    assert {row["kind"] for row in result["denials"]["rows"]} == {"denial"} and len(result["denials"]["rows"]) == 3
    assert sorted(result["denials"]["denied"]) == ["max_passengers", "payment_present", "seat_availability"]
    assert result["denials"]["deniedColor"] == "rgb(179, 38, 30)"

    # the "latest" button: the state after the other process's booking
    latest = result["backToLatest"]
    assert latest["seq"] == 4 and latest["output"] == "4 / 4" and latest["url"] == "/aggregate?key=flights%3A1"
    assert latest["state"]["flights"]["CL300"]["seats"] == 7 and len(latest["state"]["bookings"]) == 2

    # untrusted text is text: no element made from it, no dialog
    escaping = result["escaping"]
    assert writer.SCRIPT in escaping["payload"]
    assert '<img src=x onerror=\\"alert(2)\\"><script>alert(3)</script>' in escaping["staged"]
    assert escaping["images"] == 0
    assert escaping["scripts"] == ["/static/htmx.min.js?v=2.0.11", "/static/inspect.js?v=0.2.0"]
    assert result["dialogs"] == []

    # nothing from outside the local server; no CSP violation, no script error
    outside = [u for u in result["requests"] if not u.startswith(inspector + "/")]
    assert outside == [], outside
    problems = [line for line in result["console"] if line.startswith(("error", "pageerror"))]
    assert problems == [], problems

    for name in ("inspect-timeline.png", "inspect-earlier-state.png", "inspect-new-event.png", "inspect-denials.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000, name
