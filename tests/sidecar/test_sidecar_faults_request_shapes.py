"""fault 29: requests shaped to slip past the reservation, each as a concurrent burst at a small cap.

Dense prompts (digits, base64, CJK, emoji), ``n``, ``best_of``, prompt arrays on /v1/completions,
input arrays on /v1/embeddings, many images and many tools: the fake upstream bills each shape as
OpenAI does (every prompt, every ``best_of`` candidate, every choice; dense text at ~2 characters a
token, images at gpt-4.1-mini's cost of a large image), with ~0.2 s of latency so the burst is in
flight at once. The settled total (the ledger's) never exceeds the cap, and at least 90 % of it is used.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fakes import FakeOpenAI, FakeUsage, Fault, RecordedRequest
from tests.support.fakes_openai import usage_json
from tests.support.fakes_server import Plan, json_plan
from tests.support.sidecar_harness import (
    SidecarThread,
    budget,
    connection,
    ledger_lines,
    priced,
    render_dir,
    wait_for,
)

CAP_MICRO_USD = 50_000  # $0.05 at $1 per million input tokens and $4 per million output tokens
WORDS = 16  # every completion says 16 one-token words, and is asked for exactly that many
LATENCY = 0.2
IMAGE_TOKENS = 2_489  # gpt-4.1-mini, an image of 1,536+ patches: 1,536 x 1.62


def rough_tokens(text: str) -> int:
    """About what a byte-level BPE tokenizer (cl100k-like) counts: lower-case prose ~4 characters a
    token, digits and base64 ~2-2.5, CJK 1.5 tokens a character, emoji 2; never above the UTF-8 bytes."""
    quarters = 0
    for char in text:
        if char.islower() or char == " ":
            quarters += 1
        elif char.isascii():
            quarters += 2 if char.isalnum() else 4
        else:
            quarters += 8 if ord(char) > 0xFFFF else 6
    return -(-quarters // 4)


def _texts(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for inner in value.values():
            yield from _texts(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _texts(inner)


def _images(value: object) -> int:
    if isinstance(value, dict):
        return 1 if value.get("type") == "image_url" else sum(_images(v) for v in value.values())
    if isinstance(value, list):
        return sum(_images(v) for v in value)
    return 0


class BillingOpenAI(FakeOpenAI):
    """OpenAI's billing of each shape: prompt tokens of every prompt (messages, tool schemas as the
    text the model reads, images), completion tokens of every choice and every best_of candidate."""

    def answer(
        self, request: RecordedRequest, text: str, usage: FakeUsage | None
    ) -> tuple[Plan, FakeUsage | None]:
        body = json.loads(request.body)
        op = request.path.removeprefix("/v1/")
        if op == "embeddings":
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            billed = FakeUsage(sum(rough_tokens(i) for i in inputs), 0)
            data = [{"object": "embedding", "index": i, "embedding": [0.1] * 8} for i in range(len(inputs))]
            tokens = {"prompt_tokens": billed.input_tokens, "total_tokens": billed.input_tokens}
            return json_plan(
                200, {"object": "list", "data": data, "model": body["model"], "usage": tokens}
            ), billed
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or WORDS
        words = min(WORDS, limit)
        answer = " ".join(f"w{i}" for i in range(words))
        n = body.get("n", 1)
        if op == "completions":
            prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
            generated = len(prompts) * max(n, body.get("best_of") or 1)
            prompt_tokens = sum(rough_tokens(p) for p in prompts)
            choices = [
                {"index": i, "text": answer, "logprobs": None, "finish_reason": "length"}
                for i in range(len(prompts) * n)
            ]
            kind = "text_completion"
        else:
            generated = n
            prompt_tokens = sum(rough_tokens(t) + 4 for t in _texts(body["messages"])) + 3
            prompt_tokens += IMAGE_TOKENS * _images(body["messages"])
            prompt_tokens += rough_tokens(json.dumps(body.get("tools") or []))
            message = {"role": "assistant", "content": answer, "refusal": None}
            choices = [
                {"index": i, "message": message, "logprobs": None, "finish_reason": "length"}
                for i in range(n)
            ]
            kind = "chat.completion"
        billed = FakeUsage(prompt_tokens, generated * words)
        reply = {"id": "fake", "object": kind, "created": int(time.time()), "model": body["model"]}
        return json_plan(200, reply | {"choices": choices, "usage": usage_json(billed)}), billed


@pytest.fixture
def fake() -> Iterator[BillingOpenAI]:
    with BillingOpenAI() as server:
        yield server


@pytest.fixture
def sidecar(fake: BillingOpenAI, tmp_path: Path) -> Iterator[SidecarThread]:
    models = [
        priced("gpt-4o-mini", 1.0, 4.0),
        priced("gpt-4.1-mini", 0.2, 0.8),  # images: 4 per request must stay a small part of the cap
        priced("gpt-3.5-turbo-instruct", 1.0, 4.0),
        priced("text-embedding-3-small", 1.0, 0.0),
    ]
    config = render_dir(
        tmp_path / "config",
        [
            connection("openai", "openai", models, base_url=fake.base_url),
            budget("shapes-cap", CAP_MICRO_USD / 1_000_000, action="BLOCK"),
        ],
    )
    with SidecarThread(config, tmp_path / "ledger", access_log=False) as sc:
        yield sc


def burst(sc: SidecarThread, fake: BillingOpenAI, path: str, bodies: list[dict[str, Any]]) -> tuple[int, int]:
    """Send ``bodies`` at once; returns (served, settled micro-USD) after checking every refusal is a
    402 and no reservation is left open."""
    fake.script([Fault.hang(LATENCY)] * len(bodies))

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(bodies))
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            url = f"{sc.base_url}/{path}"
            return await asyncio.gather(*(client.post(url, json=body) for body in bodies))

    responses = asyncio.run(run())
    served = [r for r in responses if r.status_code == 200]
    for refused in (r for r in responses if r.status_code != 200):
        assert refused.status_code == 402, refused.text
        assert refused.json()["error"]["code"] == "budget_exceeded"
    assert served, "some requests must fit"
    assert len(served) < len(bodies), "the cap must bind: some requests have to be refused"
    book = sc.gateway.budgets
    wait_for(lambda: book.outstanding == 0, timeout=10)
    sc.run_sync(sc.gateway.ledger.flush())
    entries = wait_for(lambda: (e := ledger_lines(sc.ledger_dir)) and len(e) == len(served) and e)
    assert all(e["costBasis"] == "exact" for e in entries)
    spent = sum(e["costMicroUSD"] for e in entries)
    [scope] = sc.run_sync(_snapshot(book))
    assert (scope.spent_micro_usd, scope.reserved_micro_usd) == (spent, 0)
    return len(served), spent


async def _snapshot(book: Any) -> Any:
    return book.snapshot(datetime.now(UTC))


def assert_bound_held(shape: str, served: int, spent: int) -> None:
    used = spent / CAP_MICRO_USD
    print(f"\n{shape}: served {served}, spent ${spent / 1e6:.6f} of ${CAP_MICRO_USD / 1e6:.6f} = {used:.1%}")
    assert spent <= CAP_MICRO_USD, f"{shape} overshot the cap: {spent} > {CAP_MICRO_USD} micro-USD"
    assert used >= 0.9, f"{shape} left {1 - used:.1%} of the cap unused"


DENSE = {
    "digits": "8260193745" * 150,  # 1,500 characters, ~750 tokens
    "base64": "QmFzZTY0IGVuY29kZWQgZGF0YSwgZGVuc2U/Kz0=" * 38,
    "cjk": "数据密集的中文文本测试" * 64,  # 704 characters, 2,112 bytes
    "emoji": "🙂🚀🔥💾🧪" * 100,
}


@pytest.mark.parametrize("kind", list(DENSE))
def test_a_burst_of_dense_prompts_settles_within_the_cap(sidecar, fake, kind: str) -> None:
    text = DENSE[kind]
    bodies = [
        {
            "model": "openai/gpt-4o-mini",
            "messages": [{"role": "user", "content": f"{i} {text}"}],
            "max_tokens": WORDS,
        }
        for i in range(120)
    ]
    assert_bound_held(f"dense {kind}", *burst(sidecar, fake, "chat/completions", bodies))


def test_a_burst_of_chat_requests_with_n_choices_settles_within_the_cap(sidecar, fake) -> None:
    prompt = [{"role": "user", "content": "summarise the quarterly report in one line"}]
    bodies = [
        {"model": "openai/gpt-4o-mini", "messages": prompt, "n": 16, "max_tokens": WORDS} for _ in range(80)
    ]
    assert_bound_held("n=16", *burst(sidecar, fake, "chat/completions", bodies))


def test_a_burst_of_completions_with_best_of_20_settles_within_the_cap(sidecar, fake) -> None:
    bodies = [
        {"model": "openai/gpt-3.5-turbo-instruct", "prompt": f"Say {i}", "best_of": 20, "max_tokens": WORDS}
        for i in range(80)
    ]
    assert_bound_held("best_of=20", *burst(sidecar, fake, "completions", bodies))


def test_a_burst_of_completions_with_prompt_arrays_settles_within_the_cap(sidecar, fake) -> None:
    bodies = [
        {
            "model": "openai/gpt-3.5-turbo-instruct",
            "prompt": [f"Say {i} {j}" for j in range(20)],
            "max_tokens": WORDS,
        }
        for i in range(80)
    ]
    assert_bound_held("prompt array of 20", *burst(sidecar, fake, "completions", bodies))


def test_a_burst_of_embeddings_with_dense_input_arrays_settles_within_the_cap(sidecar, fake) -> None:
    bodies = [
        {
            "model": "openai/text-embedding-3-small",
            "input": [f"{i:04d}{j:04d}" + "73" * 40 for j in range(20)],
        }
        for i in range(150)
    ]
    assert_bound_held("embeddings input arrays", *burst(sidecar, fake, "embeddings", bodies))


def test_a_burst_of_requests_with_many_images_settles_within_the_cap(sidecar, fake) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    content = [{"type": "text", "text": "what differs between these?"}] + [image] * 4
    bodies = [
        {
            "model": "openai/gpt-4.1-mini",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": WORDS,
        }
        for _ in range(40)
    ]
    assert_bound_held("many images", *burst(sidecar, fake, "chat/completions", bodies))


def test_a_burst_of_requests_with_many_tools_settles_within_the_cap(sidecar, fake) -> None:
    def tool(k: int) -> dict[str, Any]:
        codes = [f"{k:02d}{c:06d}" for c in range(0, 30_000, 1_000)]  # product codes: dense digits
        schema = {"type": "object", "properties": {"sku": {"type": "string", "enum": codes}}}
        return {"type": "function", "function": {"name": f"order_{k}", "parameters": schema}}

    tools = [tool(k) for k in range(6)]
    prompt = [{"role": "user", "content": "order the cheapest one"}]
    bodies = [
        {
            "model": "openai/gpt-4o-mini",
            "messages": prompt,
            "tools": tools,
            "tool_choice": "none",
            "max_tokens": WORDS,
        }
        for _ in range(100)
    ]
    assert_bound_held("many tools", *burst(sidecar, fake, "chat/completions", bodies))


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"best_of": 21}, "above OpenAI's limit of 20"),
        ({"best_of": 2, "n": 3}, "fewer candidates than choices"),
        ({"best_of": 2, "stream": True}, "best_of cannot be streamed"),
    ],
)
def test_a_best_of_the_bound_cannot_hold_is_a_400_before_the_upstream(sidecar, fake, extra, why) -> None:
    body = {"model": "openai/gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": WORDS, **extra}
    reply = httpx.post(f"{sidecar.base_url}/completions", json=body, timeout=10)
    assert reply.status_code == 400, why
    assert reply.json()["error"]["param"] == "best_of"
    assert fake.requests == []
