"""clp_core.deadlines: asyncio.timeout_at's behaviour, on one timer per loop."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from clp_core import deadlines
from clp_core.deadlines import deadline_at


def _timers(loop: asyncio.AbstractEventLoop) -> int:
    return sum(1 for handle in loop._scheduled if not handle.cancelled())  # type: ignore[attr-defined]


async def test_a_block_past_its_deadline_raises_timeout_error() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with deadline_at(started + 0.05) as bound:
            await asyncio.sleep(10)
    assert bound.expired()
    assert 0.05 <= loop.time() - started < 1.0


async def test_a_block_in_time_is_left_alone() -> None:
    loop = asyncio.get_running_loop()
    async with deadline_at(loop.time() + 5) as bound:
        await asyncio.sleep(0)
    assert not bound.expired()
    await asyncio.sleep(0)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_many_blocks_share_one_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timers set, cancelled ones too: ``asyncio.timeout_at`` would set 100 here."""
    loop = asyncio.get_running_loop()
    before = _timers(loop)
    scheduled: list[float] = []
    call_at = loop.call_at

    def counting(when: float, *args: Any, **kwargs: Any) -> Any:
        scheduled.append(when)
        return call_at(when, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting)
    for _ in range(100):
        async with deadline_at(loop.time() + 5):
            await asyncio.sleep(0)
    assert len(scheduled) <= 1 and _timers(loop) - before <= 1


async def test_an_earlier_deadline_moves_the_timer() -> None:
    loop = asyncio.get_running_loop()

    async def long() -> None:
        async with deadline_at(loop.time() + 30):
            await asyncio.sleep(1)

    waiting = asyncio.create_task(long())
    await asyncio.sleep(0)
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with deadline_at(started + 0.05):
            await asyncio.sleep(10)
    assert loop.time() - started < 1.0
    await waiting  # its own deadline is far: it finished its sleep


async def test_concurrent_blocks_expire_each_at_its_own_time() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    ended: dict[float, float] = {}

    async def bounded(delay: float) -> None:
        try:
            async with deadline_at(start + delay):
                await asyncio.sleep(10)
        except TimeoutError:
            ended[delay] = loop.time() - start

    await asyncio.gather(*(bounded(d) for d in (0.15, 0.05, 0.1)))
    assert sorted(ended) == [0.05, 0.1, 0.15]
    for delay, took in ended.items():
        assert delay <= took < delay + 0.5


async def test_reschedule_moves_the_deadline_both_ways() -> None:
    loop = asyncio.get_running_loop()
    async with deadline_at(loop.time() + 0.05) as bound:
        bound.reschedule(loop.time() + 5)
        await asyncio.sleep(0.1)  # past the first deadline
    assert not bound.expired()
    with pytest.raises(TimeoutError):
        async with deadline_at(loop.time() + 5) as bound:
            bound.reschedule(loop.time() + 0.05)
            await asyncio.sleep(10)
    with pytest.raises(RuntimeError):
        bound.reschedule(loop.time() + 1)


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    loop = asyncio.get_running_loop()

    async def bounded() -> None:
        async with deadline_at(loop.time() + 5):
            await asyncio.sleep(10)

    task = asyncio.create_task(bounded())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_outer_asyncio_timeout_wins_over_a_later_deadline() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05) as outer:
            async with deadline_at(loop.time() + 5) as inner:
                await asyncio.sleep(10)
    assert outer.expired() and not inner.expired()


async def test_an_error_inside_passes_through() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(KeyError):
        async with deadline_at(loop.time() + 5):
            raise KeyError("x")


def test_each_loop_has_its_watch_and_lets_go_of_it() -> None:
    async def one() -> None:
        async with deadline_at(asyncio.get_running_loop().time() + 0.01):
            await asyncio.sleep(0)

    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []
    for _ in range(3):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(one())
        loops.append(weakref.ref(loop))
        loop.close()
        del loop
    deadlines._last = None
    gc.collect()
    assert all(ref() is None for ref in loops), "a closed loop is kept alive by its watch"
    assert len(deadlines._watches) == 0


async def test_entering_twice_or_outside_a_task_is_refused() -> None:
    loop = asyncio.get_running_loop()
    bound = deadline_at(loop.time() + 5)
    async with bound:
        pass
    with pytest.raises(RuntimeError):
        async with bound:
            pass
