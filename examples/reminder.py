"""Reminder: an AI proposes the date of a reminder, a human accepts it, then it is committed.

The "AI" is a deterministic fake standing in for an LLM: it reads the reminder's text and
answers with a ``date``. Its answer is only ever *staged*: the intent stays incomplete and
the state untouched until a human accepts the proposal and the commit passes the guards.
A malformed date (February 30) is refused when proposed; a date in the past is refused by
a guard. Run: ``python examples/reminder.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import TypedDict

import clp_core as clp

TODAY = dt.date(2026, 3, 2)  # fixed, so that the example always prints the same thing


async def fake_llm(intent: clp.Intent) -> dict:
    """Stands in for a language model asked "when should this reminder fire?"."""
    await asyncio.sleep(0)  # a real provider would await an HTTP call here
    text = intent.payload["text"].lower()
    if "tomorrow" in text:
        return {"date": (TODAY + dt.timedelta(days=1)).isoformat()}
    if "yesterday" in text:
        return {"date": (TODAY - dt.timedelta(days=1)).isoformat()}
    match = re.search(r"february (\d+)", text)
    if match:  # the model does not know February 30 does not exist
        return {"date": f"{TODAY.year}-02-{int(match.group(1)):02d}"}
    if "rewrite" in text:  # the model gets creative and rewrites the text too
        return {"text": "Something else entirely", "date": TODAY.isoformat()}
    return {"date": (TODAY + dt.timedelta(days=7)).isoformat()}


def as_date(value: str | dt.date) -> dt.date:
    """A ``date`` input holds an ISO 8601 string or a ``datetime.date``."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


contract = clp.Contract(state={"reminders": "array"})


@contract.intent("createReminder")
class CreateReminder(TypedDict):
    """Remind the user of ``text`` on ``date`` (the AI may propose the date)."""

    text: str
    date: dt.date


@contract.guard(on="createReminder")
def date_not_in_past(ctx: clp.Ctx[CreateReminder]) -> bool:
    return as_date(ctx.intent.payload["date"]) < TODAY


@contract.transition(on="createReminder", when=lambda ctx: ctx.intent.complete)
def create(ctx: clp.Ctx[CreateReminder]) -> dict:
    return {"reminders": clp.ops.push({"text": ctx.intent.payload["text"], "date": ctx.intent.payload["date"]})}


async def main() -> None:
    runtime = clp.create_runtime(contract, fake_llm)

    print("1. 'Dentist tomorrow at 9': the AI proposes, the human accepts")
    intent = await runtime.dispatch("createReminder", {"text": "Dentist tomorrow at 9"})
    print(f"  dispatched; complete: {intent.complete}")
    try:
        await runtime.commit()
    except clp.errors.IncompleteIntentError as exc:
        print(f"  commit before proposing: {exc}")
    proposal = await runtime.propose("createReminder")
    print(f"  AI proposes {proposal} (staged, source {runtime.staged_proposal.source}); "
          f"reminders: {runtime.get_state('reminders')}")
    try:
        await runtime.commit()
    except clp.errors.UnacceptedProposalError as exc:
        print(f"  commit before accepting: {exc}")
    intent = await runtime.accept_proposal("createReminder")
    print(f"  human accepted; complete: {intent.complete}")
    await runtime.commit()
    print(f"  committed; reminders: {runtime.get_state('reminders')}")

    print("2. 'Pay rent on February 30': the AI proposes a date that does not exist")
    await runtime.dispatch("createReminder", {"text": "Pay rent on February 30"})
    try:
        await runtime.propose("createReminder")
    except clp.errors.ValidationError as exc:
        print(f"  refused: {exc}")
    print(f"  nothing staged: {runtime.staged_proposal}; the human types the date instead")
    await runtime.execute("createReminder", {"text": "Pay rent", "date": "2026-03-31"})

    print("3. 'Call grandma, like yesterday': accepted by the human, refused by the guard")
    await runtime.dispatch("createReminder", {"text": "Call grandma, like yesterday"})
    print(f"  AI proposes {await runtime.propose('createReminder')}; accepted")
    await runtime.accept_proposal("createReminder")
    try:
        await runtime.commit()
    except clp.errors.GuardDeniedError as exc:
        print(f"  refused: {exc}")

    print("4. 'Please rewrite this': the AI tries to change what the human wrote")
    await runtime.dispatch("createReminder", {"text": "Please rewrite this"})
    try:
        await runtime.propose("createReminder")
    except clp.errors.ProposalError as exc:
        print(f"  refused: {exc}")

    reminders = runtime.get_state("reminders")
    print(f"reminders: {reminders}")
    assert [r["date"] for r in reminders] == ["2026-03-03", "2026-03-31"]
    print("log phases: " + " ".join(e.phase + ("!" if e.error else "") for e in runtime.get_log()))


if __name__ == "__main__":
    asyncio.run(main())
