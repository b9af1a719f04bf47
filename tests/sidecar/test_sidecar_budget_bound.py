"""Issue 5's "must show": a burst of 200 requests against a small cap, through the real sidecar.

The cap holds (settled spend never exceeds it), most of it is used (over-reservation does not
starve the burst), every refusal is a 402 in the OpenAI envelope, and no reservation leaks.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluicegate_sidecar.budget import Reservation
from sluicegate_sidecar.pricing import worst_case_micro_usd
from sluicegate_sidecar.routing.bounds import request_bound
from sluicegate_sidecar.tokens import estimate_prompt_tokens
from tests.support.fakes import FakeOpenAI, FakeUsage, RecordedRequest
from tests.support.sidecar_harness import (
    SidecarThread,
    budget,
    connection,
    ledger_lines,
    priced,
    render_dir,
    reserved_prompt_of,
    tier,
    wait_for,
)

CAP_MICRO_USD = 20_000  # $0.02
REQUESTS = 200
ASKED = (16, 32, 64, 128, None)  # max_tokens per request, round robin (None: the sidecar sets one)
ANSWER = " ".join(f"word{i}" for i in range(30))  # 30 output tokens unless max_tokens cuts it


class RealisticOpenAI(FakeOpenAI):
    """Reports usage as a provider would: prompt tokens a little under the sidecar's (high-side)
    estimate, and one output token per word actually sent (fewer when max_tokens cuts the answer)."""

    def reply_usage(self, request: RecordedRequest, pieces: list[str], usage: FakeUsage | None) -> FakeUsage:
        estimate = estimate_prompt_tokens("chat", json.loads(request.body))
        return FakeUsage(estimate - 3, len(pieces))


@pytest.fixture
def fake() -> Iterator[RealisticOpenAI]:
    with RealisticOpenAI(text=ANSWER) as server:
        yield server


@pytest.fixture
def sidecar(fake: RealisticOpenAI, tmp_path: Path) -> Iterator[SidecarThread]:
    config = render_dir(
        tmp_path / "config",
        [
            connection("openai", "openai", [priced("gpt-4o-mini", 1.0, 4.0)], base_url=fake.base_url),
            tier("standard", 10, [("openai", "gpt-4o-mini")]),
            budget("burst-cap", CAP_MICRO_USD / 1_000_000, action="BLOCK"),
        ],
    )
    with SidecarThread(config, tmp_path / "ledger", access_log=False) as sc:
        yield sc


def body_for(i: int) -> dict[str, Any]:
    messages = reserved_prompt_of(40 + i % 25)
    content = messages[0]["content"]
    messages[0]["content"] = f"{i:03d}" + content[3:]  # same estimate, a recognisable prompt
    body: dict[str, Any] = {"model": "tier:standard", "messages": messages, "stream": i % 2 == 0}
    if ASKED[i % len(ASKED)] is not None:
        body["max_tokens"] = ASKED[i % len(ASKED)]
    return body


async def send(
    client: httpx.AsyncClient, url: str, body: dict[str, Any]
) -> tuple[int, dict[str, str], bytes]:
    async with client.stream("POST", url, json=body) as response:
        raw = await response.aread()
        return response.status_code, dict(response.headers), raw


async def burst(base_url: str) -> list[tuple[int, dict[str, str], bytes]]:
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        url = f"{base_url}/chat/completions"
        return await asyncio.gather(*(send(client, url, body_for(i)) for i in range(REQUESTS)))


def test_a_burst_of_200_requests_never_spends_past_the_cap_and_uses_most_of_it(sidecar, fake) -> None:
    gateway = sidecar.gateway
    book = gateway.budgets
    price = gateway.served.loaded.config.providers[0].models[0].price
    admitted: list[tuple[int, int | None]] = []  # (reserved, room left just before), per reservation
    real_reserve = book.reserve

    def recording_reserve(attribution, amount, now, *, priced=True):  # runs on the sidecar's loop
        room = book.headroom(attribution, now)
        result = real_reserve(attribution, amount, now, priced=priced)
        if isinstance(result, Reservation):
            admitted.append((amount, room))
        return result

    book.reserve = recording_reserve

    results = asyncio.run(burst(sidecar.base_url))

    served = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] != 200]
    for status, headers, raw in refused:
        assert status == 402, raw
        error = json.loads(raw)["error"]
        assert (error["type"], error["code"]) == ("budget_exceeded", "budget_exceeded")
        assert "burst-cap" in error["message"]
        assert headers["x-sluicegate-verdict"] in ("allow", "BLOCK")
    for status, headers, raw in served:
        assert b"word0" in raw and b'"error"' not in raw
    assert refused, "the cap must bind: some requests have to be refused"

    wait_for(lambda: book.outstanding == 0, timeout=5)
    sidecar.run_sync(gateway.ledger.flush())
    entries = wait_for(lambda: (e := ledger_lines(sidecar.ledger_dir)) and len(e) == len(served) and e)
    assert all(e["status"] == 200 and e["costBasis"] == "exact" for e in entries)
    spent = sum(e["costMicroUSD"] for e in entries)

    # Every output cap sent upstream is the one its reservation was sized with, and each
    # reservation fitted in what remained when it was made.
    assert len(fake.requests) == len(served) == len(admitted)
    assert all(room is not None and amount <= room for amount, room in admitted)
    sent = []
    clamped = 0
    for request in fake.requests:
        body = request.json
        index = int(body["messages"][0]["content"][:3])
        asked = ASKED[index % len(ASKED)]
        cap = body["max_completion_tokens"]  # the field every OpenAI chat model accepts
        assert asked is None or cap <= asked
        clamped += asked is not None and cap < asked
        sent.append(worst_case_micro_usd(price, request_bound("chat", body, 1, None).text_tokens, cap))
    assert sorted(sent) == sorted(amount for amount, _ in admitted)

    used = spent / CAP_MICRO_USD
    print(
        f"\nbudget burst: {REQUESTS} concurrent requests ({REQUESTS // 2} streaming), cap ${CAP_MICRO_USD / 1e6:.6f}: "
        f"served {len(served)}, refused {len(refused)} (402 budget_exceeded); "
        f"spent ${spent / 1e6:.6f} of ${CAP_MICRO_USD / 1e6:.6f} = {used:.1%} used, "
        f"overshoot ${max(0, spent - CAP_MICRO_USD) / 1e6:.6f}; {clamped} served with max_tokens clamped to fit; "
        f"reservations outstanding {book.outstanding}"
    )
    assert spent <= CAP_MICRO_USD
    assert used > 0.8
    [scope] = sidecar.run_sync(snapshot(book))
    assert (scope.spent_micro_usd, scope.reserved_micro_usd) == (spent, 0), (
        scope
    )  # the book agrees with the ledger


async def snapshot(book: Any) -> Any:
    return book.snapshot(datetime.now(UTC))


@pytest.fixture
def slow_gateway(tmp_path: Path) -> Iterator[Callable[..., tuple[SidecarThread, RealisticOpenAI]]]:
    """A $0.005 cap; the fake streams ten words, 0.1 s apart (about 1 s a stream)."""
    with ExitStack() as stack:
        fake = stack.enter_context(RealisticOpenAI(text=" ".join(["word"] * 10), chunk_delay=0.1))

        def start(**settings: Any) -> tuple[SidecarThread, RealisticOpenAI]:
            config = render_dir(
                tmp_path / "config",
                [
                    connection("openai", "openai", [priced("gpt-4o-mini", 1.0, 4.0)], base_url=fake.base_url),
                    tier("standard", 10, [("openai", "gpt-4o-mini")]),
                    budget("small", 0.005),
                ],
            )
            sidecar = SidecarThread(config, tmp_path / "ledger", access_log=False, **settings)
            return stack.enter_context(sidecar), fake

        yield start


def while_streaming(sc: SidecarThread, second: dict[str, Any]) -> tuple[httpx.Response, float]:
    """Hold a 4,050 micro-USD reservation with a slow stream (max_tokens 1000, ten words used) and
    send ``second`` once it is held; returns the second's response and how long it took."""
    first = {"model": "tier:standard", "messages": reserved_prompt_of(50), "max_tokens": 1000, "stream": True}
    client = httpx.Client(timeout=10)
    with client, client.stream("POST", f"{sc.base_url}/chat/completions", json=first) as stream:
        chunks = stream.iter_raw()
        next(chunks)
        assert sc.gateway.budgets.outstanding == 1
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            pending = pool.submit(httpx.post, f"{sc.base_url}/chat/completions", json=second, timeout=10)
            response = pending.result()
            elapsed = time.monotonic() - started
        assert b"[DONE]" in b"".join(chunks)
    return response, elapsed


def test_a_request_kept_out_only_by_a_reservation_in_flight_waits_for_it_and_is_served_in_full(
    slow_gateway,
) -> None:
    sc, fake = slow_gateway()
    second = {
        "model": "tier:standard",
        "messages": reserved_prompt_of(50),
        "max_tokens": 500,
    }  # worst case 2,050
    response, elapsed = while_streaming(sc, second)  # only 950 is free until the stream settles
    assert response.status_code == 200
    assert (
        fake.requests[1].json["max_completion_tokens"] == 500
    )  # not clamped to the 950 free while it waited
    assert elapsed > 0.3  # it waited for the stream to settle


def test_the_wait_for_room_is_bounded_then_the_output_cap_is_clamped_to_what_remains(slow_gateway) -> None:
    sc, fake = slow_gateway(budget_wait_seconds=0.2)
    second = {"model": "tier:standard", "messages": reserved_prompt_of(50), "max_tokens": 500}
    response, elapsed = while_streaming(sc, second)
    assert response.status_code == 200
    assert elapsed < 0.8  # did not wait for the ~1 s stream
    assert (
        fake.requests[1].json["max_completion_tokens"] == (5_000 - 4_050 - 50) // 4
    )  # what remained: 225 tokens
