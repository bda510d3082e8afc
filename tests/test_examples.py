"""Each example in examples/ runs to completion and prints what it is about."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

CASES = {
    "counter.py": [
        "refused: Guard no_negative denied (guard 'no_negative' suggests {'amount': 0})",
        "committing without accepting: Unaccepted AI proposal present",
        "final count: 6, history: [1, 5, 0]",
    ],
    "flight_booking.py": [
        "results: ['CL101', 'CL205']",
        "DENIED: Guard seat_availability denied; suggestion: {'passengers': 1}",
        "DENIED: Guard payment_present denied",
        "committed book: set flights.CL101.seats, push bookings",
        "DENIED: Guard max_passengers denied",
        "seats left: CL101=1, CL205=1, CL300=9",
    ],
    "reminder.py": [
        "AI proposes {'date': '2026-03-03'} (staged, source ai); reminders: None",
        "commit before accepting: Unaccepted AI proposal present",
        "refused: Invalid proposal for createReminder: date: expected date",
        "refused: Guard date_not_in_past denied",
        "refused: Proposal tries to override required field: text",
    ],
    "classifier.py": [
        "AI proposes {'category': 'astrology'}",
        "DENIED: Guard allowed_category denied; staged {'category': 'other'} from guard:allowed_category",
        "filed as 'other'",
        "accepted proposals came from: ['ai', 'ai', 'ai', 'guard:allowed_category']",
    ],
    "web_app.py": [  # Starlette (installed with clp-inspect), through its test client
        "increment c7: {'key': 'c7', 'changed': ['count']}",
        "refused: Guard no_negative denied",
        "c7: {'key': 'c7', 'state': {'count': 10}}",
        "50 counters, 10 live (max_live 10), 41 evicted",
        "c0 after eviction: {'count': 1}",
        "after restart, c49: {'count': 49}",
    ],
}
NEEDS = {"web_app.py": "starlette"}


TESTED_ELSEWHERE = {"triage.py": "tests/test_triage_example.py (it needs Redis and an llm model)"}


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted([*CASES, *TESTED_ELSEWHERE])


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_runs(name, tmp_path):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for line in CASES[name]:
        assert line in proc.stdout, f"{line!r} not in the output of {name}:\n{proc.stdout}"
