"""The request log's writer: lines written together, none lost at a flush or past the size limit."""

from __future__ import annotations

import asyncio
import sys

import pytest

from sluicegate_sidecar.accesslog import AccessLog


class Stdout:
    """What ``sys.stdout`` offers the writer: a binary ``buffer``; each write call is kept."""

    def __init__(self) -> None:
        self.buffer = self
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.writes.append(data)
        return len(data)

    def flush(self) -> None:
        pass


def captured(monkeypatch: pytest.MonkeyPatch) -> Stdout:
    """``sys.stdout`` replaced in the test's body (pytest sets its own between fixtures and the body)."""
    out = Stdout()
    monkeypatch.setattr(sys, "stdout", out)
    return out


def test_lines_of_a_burst_leave_in_one_write_after_the_flush_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = captured(monkeypatch)

    async def burst() -> list[list[bytes]]:
        log = AccessLog(flush_seconds=0.05)
        for n in range(30):
            log.write(b'{"n":%d}\n' % n)
        before = list(stdout.writes)
        await asyncio.sleep(0.12)
        return [before, list(stdout.writes)]

    before, after = asyncio.run(burst())
    assert before == []  # nothing yet: the lines wait for the batch
    assert after == [b"".join(b'{"n":%d}\n' % n for n in range(30))]  # all of them, in order, at once


def test_a_batch_past_its_size_limit_is_written_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = captured(monkeypatch)

    async def big() -> list[bytes]:
        log = AccessLog(flush_seconds=60, flush_bytes=100)
        for _ in range(3):
            log.write(b"x" * 40 + b"\n")
        return list(stdout.writes)

    assert asyncio.run(big()) == [(b"x" * 40 + b"\n") * 3]


def test_flush_writes_what_is_kept_and_a_broken_stdout_does_not_stop_the_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stdout = captured(monkeypatch)

    async def run() -> None:
        log = AccessLog(flush_seconds=60)
        log.write(b"a\n")
        log.flush()  # as the sidecar does when it stops
        assert stdout.writes == [b"a\n"]

        def broken(data: bytes) -> int:
            raise BrokenPipeError("stdout closed")

        stdout.write = broken  # type: ignore[method-assign]
        log.write(b"b\n")
        log.flush()  # logged, not raised: requests are still served
        del stdout.write
        log.write(b"c\n")
        log.flush()

    asyncio.run(run())
    assert stdout.writes[-1] == b"c\n"
