"""``kill -9`` of the real ``sluicegate sidecar`` process under load (issue 13 item 12; ledger before reply, docs/architecture.md):
no reply a client received completely is missing from the ledger — a stream whose terminator it saw
(OpenAI's ``data: [DONE]``, Anthropic's ``message_stop``, the ``[DONE]`` made for a Gemini stream at
its end of body) or a whole non-streamed body. The upstreams keep each stream open 300 ms after its
last event, as keep-alive upstreams do: the window in which a terminator forwarded at once and an
entry written at the upstream's close lose the record.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anthropic
import httpx
import httpx2  # the HTTP client under both SDKs: a stream cut mid-body raises its errors
import openai
import pytest

from sluicegate_contract.ledgerfiles import read_entries
from sluicegate_reports.ledger_cli import verify
from sluicegate_sidecar.ledger.writer import Ledger
from tests.support.fakes import FakeAnthropic, FakeGemini, FakeOpenAI
from tests.support.sidecar_harness import budget, connection, free_ports, priced, render_dir, tier

SLUICEGATE = str(Path(sys.executable).with_name("sluicegate"))
LINGER = 0.3  # seconds each fake keeps a streamed body open after its last event
CLAUDE = "claude-haiku-4-5"
GEMINI = "gemini-2.0-flash"
ROUNDS = (80, 160, 240)  # completed replies before each kill (or KILL_AFTER seconds, if sooner)...
KILL_AFTER = 4.0
PER_KIND = 4  # ...and at least this many replies of each kind completed in the round
MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def upstreams() -> Iterator[tuple[FakeOpenAI, FakeAnthropic, FakeGemini]]:
    with (
        FakeOpenAI(linger=LINGER) as oai,
        FakeAnthropic(linger=LINGER) as ant,
        FakeGemini(linger=LINGER) as gem,
    ):
        yield oai, ant, gem


def start_sidecar(config: Path, ledger: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
    env["SLUICEGATE_POD_NAMESPACE"] = "default"
    for _ in range(3):  # a port picked free can be taken before the sidecar binds it: try others
        port, ops_port = free_ports(2)
        command = [
            SLUICEGATE, "sidecar", "--config", str(config), "--ledger-dir", str(ledger),
            "--port", str(port), "--ops-port", str(ops_port), "--labels-file", str(log.parent / "labels"),
            "--no-access-log",
        ]  # fmt: skip
        with log.open("ab") as err:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{ops_port}/readyz", timeout=1).status_code == 200:
                    return process, f"http://127.0.0.1:{port}"
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        process.kill()
        process.wait(timeout=10)
    raise AssertionError(f"the sidecar did not start:\n{log.read_text(errors='replace')}")


Request = Callable[[str], Awaitable[bool]]  # sends one request with this id; True once received whole


def clients(oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic, done: set[str]) -> dict[str, Request]:
    """One request of each kind; each adds its id to ``done`` the moment the client holds it whole."""

    async def openai_stream(rid: str, model: str) -> None:
        async with oai.chat.completions.with_streaming_response.create(
            model=model, messages=MESSAGES, stream=True, extra_headers={"x-request-id": rid}
        ) as response:
            async for line in response.iter_lines():
                if line == "data: [DONE]":
                    done.add(rid)

    async def anthropic_stream(rid: str) -> None:
        async with ant.messages.with_streaming_response.create(
            model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True, extra_headers={"x-request-id": rid}
        ) as response:
            async for line in response.iter_lines():
                if line == "event: message_stop":
                    done.add(rid)

    async def openai_whole(rid: str) -> None:
        raw = await oai.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-request-id": rid}
        )
        if raw.parse().choices[0].message.content:
            done.add(rid)

    kinds: dict[str, Callable[[str], Awaitable[None]]] = {
        "openai-stream": lambda rid: openai_stream(rid, "gpt-4o-mini"),
        "anthropic-stream": anthropic_stream,
        "gemini-stream": lambda rid: openai_stream(rid, GEMINI),
        "openai-whole": openai_whole,
    }

    def guarded(send: Callable[[str], Awaitable[None]]) -> Request:
        async def run(rid: str) -> bool:
            try:
                await send(rid)
            except (openai.APIError, anthropic.APIError, httpx2.HTTPError):
                pass  # the kill cut it: complete only if it was already in ``done``
            return rid in done

        return run

    return {name: guarded(send) for name, send in kinds.items()}


async def load_until_killed(
    process: subprocess.Popen[bytes], base: str, round_name: str, kill_at: int
) -> tuple[set[str], dict[str, int]]:
    """Run 8 clients of each kind until ``kill_at`` replies completed, ``kill -9`` the sidecar."""
    done: set[str] = set()
    sent: dict[str, int] = {}
    oai = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="app-placeholder", max_retries=0, timeout=20)
    ant = anthropic.AsyncAnthropic(base_url=base, api_key="app-placeholder", max_retries=0, timeout=20)
    requests = clients(oai, ant, done)
    killed = asyncio.Event()

    async def worker(kind: str, number: int) -> None:
        count = 0
        while not killed.is_set():
            count += 1
            sent[kind] = sent.get(kind, 0) + 1
            await requests[kind](f"{round_name}-{kind}-{number}-{count}")

    workers = [asyncio.create_task(worker(kind, n)) for kind in requests for n in range(8)]
    deadline = time.monotonic() + KILL_AFTER

    def loaded() -> bool:  # every kind completed some (a Gemini stream ends only at the body's end)
        per_kind = [sum(1 for rid in done if f"-{kind}-" in rid) for kind in requests]
        return len(done) >= kill_at and min(per_kind) >= PER_KIND

    while not loaded() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    killed.set()
    try:
        await asyncio.wait_for(asyncio.gather(*workers), timeout=30)
    finally:
        await oai.close()
        await ant.close()
    assert process.wait(timeout=10) == -signal.SIGKILL
    return done, sent


async def test_kill_9_under_load_loses_no_reply_a_client_received_completely(
    tmp_path: Path, upstreams
) -> None:
    oai, ant, gem = upstreams
    config = render_dir(
        tmp_path / "config",
        [
            connection("openai", "openai-compatible", [priced("gpt-4o-mini")], base_url=oai.base_url),
            connection("anthropic", "anthropic", [priced(CLAUDE)], base_url=ant.root_url),
            connection("gemini", "gemini", [priced(GEMINI)], base_url=gem.root_url),
            tier("standard", 10, [("openai", "gpt-4o-mini")]),
            budget("daily", 1_000),
        ],
    )
    ledger_dir, log = tmp_path / "ledger", tmp_path / "sidecar.log"
    received: set[str] = set()
    kinds: dict[str, int] = {}
    for number, kill_at in enumerate(ROUNDS):
        process, base = start_sidecar(config, ledger_dir, log)  # a restart on the same ledger
        try:
            done, sent = await load_until_killed(process, base, f"r{number}", kill_at)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        received |= done
        for kind, count in sent.items():
            kinds[kind] = kinds.get(kind, 0) + count

    Ledger.open(ledger_dir)  # what the next start does: cut a line torn by the kill
    assert verify([ledger_dir])[1] is None
    recorded = {entry.request_id: entry for entry in read_entries([ledger_dir])}
    missing = sorted(received - recorded.keys())
    assert not missing, (
        f"{len(missing)} of {len(received)} replies received whole are not in the ledger: {missing[:5]}"
    )
    assert all(recorded[rid].status == 200 and recorded[rid].cost_micro_usd > 0 for rid in received)
    for kind in ("openai-stream", "anthropic-stream", "gemini-stream", "openai-whole"):  # all were exercised
        assert sum(1 for rid in received if f"-{kind}-" in rid) >= 10, (kind, kinds, len(received))
