"""Deadlines on one shared timer per loop (``deadlines.Deadline``): what ``asyncio.timeout`` promised
the upstream and stream code — a late block ends in ``TimeoutError`` soon after its time, a prompt
one is left alone, a cancellation from elsewhere stays one — with one timer for all of them."""

from __future__ import annotations

import asyncio

import pytest

from sluicegate_sidecar.deadlines import TICK, Deadline


async def test_a_block_past_its_deadline_ends_in_timeout_error_within_a_tick() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError), Deadline(0.1):
        await asyncio.sleep(5)
    assert 0.1 <= loop.time() - started < 0.1 + 2 * TICK + 0.1


async def test_a_block_done_in_time_is_left_alone_and_the_task_goes_on() -> None:
    with Deadline(0.05) as deadline:
        await asyncio.sleep(0)
    assert not deadline.expired
    await asyncio.sleep(0.05 + 2 * TICK)  # past the deadline: nothing cancels the task later
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def waits() -> None:
        with Deadline(10):
            await asyncio.sleep(5)

    task = asyncio.create_task(waits())
    await asyncio.sleep(0.01)
    task.cancel()  # the client went away: not a timeout
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancellation_from_elsewhere_after_the_deadline_fired_stays_a_cancellation() -> None:
    proceed = asyncio.Event()

    async def waits() -> None:
        with Deadline(0.01):
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                await proceed.wait()  # the deadline fired; now someone else cancels too
                raise

    task = asyncio.create_task(waits())
    await asyncio.sleep(0.01 + 2 * TICK)
    task.cancel()
    proceed.set()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_rescheduling_moves_the_deadline_later_earlier_or_away() -> None:
    loop = asyncio.get_running_loop()
    with Deadline(0.05) as deadline:  # moved later: it does not fire at its first time
        deadline.reschedule(loop.time() + 10)
        await asyncio.sleep(0.05 + 2 * TICK)
    with Deadline(None) as never:  # none at first ...
        assert never.when() is None
        await asyncio.sleep(TICK)
    with pytest.raises(TimeoutError), Deadline(10) as deadline:  # ... and brought forward (as the drain)
        deadline.reschedule(loop.time() + 0.02)
        assert deadline.when() == pytest.approx(loop.time() + 0.02, abs=0.01)
        await asyncio.sleep(5)
    with Deadline(0.02) as deadline:
        deadline.reschedule(None)  # taken away
        await asyncio.sleep(0.02 + 2 * TICK)
    deadline.reschedule(loop.time())  # after the block: nothing left to cancel, so nothing fires
    await asyncio.sleep(2 * TICK)


async def test_only_the_task_whose_deadline_passed_is_cancelled() -> None:
    async def one(seconds: float, sleep: float) -> str:
        try:
            with Deadline(seconds):
                await asyncio.sleep(sleep)
        except TimeoutError:
            return "timeout"
        return "done"

    results = await asyncio.gather(*(one(0.05 if i % 2 else 10, 0.3) for i in range(20)))
    assert results == ["done", "timeout"] * 10


def test_each_event_loop_gets_its_own_timer() -> None:
    async def late() -> None:
        with Deadline(0.02):
            await asyncio.sleep(5)

    for _ in range(3):  # a new loop each time (tests, a restarted runner): the deadline still fires
        with pytest.raises(TimeoutError):
            asyncio.run(late())
