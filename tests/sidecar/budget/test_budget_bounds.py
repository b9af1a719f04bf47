"""The reservation's upper bound of a request (``bounds``): input from UTF-8 bytes, images at each
provider's maximum, tool schemas as JSON, and every output the request can produce."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from sluicegate_contract.schema import Model
from sluicegate_sidecar.routing.bounds import (
    ANTHROPIC_IMAGE_TOKENS,
    GPT_4O_MINI_IMAGE_TOKENS,
    OPENAI_IMAGE_TOKENS,
    OTHER_IMAGE_TOKENS,
    TOOLS_PREAMBLE_TOKENS,
    request_bound,
)
from sluicegate_sidecar.routing.catalog import Target
from sluicegate_sidecar.tokens import estimate_prompt_tokens

OVERHEAD = 4 + 3  # one message, plus the reply priming


def chat(content: object, **extra: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": content}], **extra}


def target(provider: str = "openai", model: str = "gpt-4o", window: int | None = None) -> Target:
    return Target("conn", provider, model, Model(name=model, context_window=window))  # type: ignore[arg-type]


def test_dense_text_is_bounded_by_its_utf8_bytes_where_the_estimate_counts_far_less() -> None:
    for text in ("8260193745" * 50, "数据密集的中文文本" * 20, "🙂🚀🔥" * 40):
        request = chat(text)
        bound = request_bound("chat", request, 1, None)
        assert bound.text_tokens == len(text.encode()) + len("user") + OVERHEAD
        assert bound.text_tokens > 1.5 * estimate_prompt_tokens("chat", request)


@given(st.text(max_size=300))
def test_the_bound_of_any_text_is_at_least_its_byte_count_and_the_estimate(text: str) -> None:
    request = chat(text)
    bound = request_bound("chat", request, 1, None).text_tokens
    assert bound >= len(text.encode("utf-8", "surrogatepass"))
    assert bound >= estimate_prompt_tokens("chat", request)


def test_images_count_each_providers_maximum_per_image() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    bound = request_bound("chat", chat([image, image, image]), 1, None)
    assert bound.images == 3
    base = bound.text_tokens
    assert bound.input_tokens(target("openai", "gpt-4.1")) == base + 3 * OPENAI_IMAGE_TOKENS
    assert bound.input_tokens(target("openai", "gpt-4o-mini")) == base + 3 * GPT_4O_MINI_IMAGE_TOKENS
    assert bound.input_tokens(target("anthropic", "claude-sonnet-4-5")) == base + 3 * ANTHROPIC_IMAGE_TOKENS
    assert bound.input_tokens(target("gemini", "gemini-2.5-flash")) == base + 3 * OTHER_IMAGE_TOKENS


def test_one_prompt_is_bounded_by_the_context_window_and_a_batch_is_not() -> None:
    one = request_bound("chat", chat("x" * 5_000), 1, None)
    assert one.input_tokens(target(window=1_000)) == 1_000  # a longer prompt is refused unbilled
    batch = request_bound("embeddings", {"input": ["x" * 5_000] * 3}, 1, None)
    assert batch.input_tokens(target(window=1_000)) == 15_000


def test_tools_count_the_bytes_of_their_json_and_a_preamble() -> None:
    tools = [
        {"type": "function", "function": {"name": f"f{k}", "parameters": {"type": "object"}}}
        for k in range(3)
    ]
    with_tools = request_bound("chat", chat("hi", tools=tools), 1, None).text_tokens
    without = request_bound("chat", chat("hi"), 1, None).text_tokens
    assert (
        with_tools - without == len(json.dumps(tools, separators=(",", ":"))) + TOOLS_PREAMBLE_TOKENS + 3 * 8
    )


def test_every_output_a_request_can_produce_is_counted() -> None:
    assert request_bound("chat", chat("hi"), 16, None).outputs == 16
    assert request_bound("completions", {"prompt": "hi"}, 1, 20).outputs == 20
    assert request_bound("completions", {"prompt": ["a", "b", "c"]}, 2, 5).outputs == 15
    assert request_bound("completions", {"prompt": [[1, 2], [3, 4]]}, 1, None).outputs == 2
    assert request_bound("completions", {"prompt": [1, 2, 3]}, 1, None).outputs == 1  # one token-id prompt
    assert request_bound("embeddings", {"input": ["a", "b"]}, 1, None).outputs == 0


def test_token_id_prompts_count_one_token_per_id() -> None:
    assert request_bound("completions", {"prompt": [[1, 2, 3], [4, 5]]}, 1, None).text_tokens == 5
    assert request_bound("embeddings", {"input": [101, 102, 103, 104]}, 1, None).text_tokens == 4


def test_a_responses_request_is_bounded_by_its_input_instructions_tools_format_and_images() -> None:
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}}
    fmt = {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}}
    image = {"type": "input_image", "image_url": "data:image/png;base64,AA"}
    request = {
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "日本語"}, image]}],
        "instructions": "x" * 100,
        "tools": [tool],
        "text": fmt,
        "n": 4,  # not a Responses field: one output whatever it says
    }
    bound = request_bound("responses", request, 4, None)
    schema_bytes = len(json.dumps([tool], separators=(",", ":"))) + len(
        json.dumps(fmt, separators=(",", ":"))
    )
    assert bound.text_tokens >= 9 + 100 + schema_bytes + TOOLS_PREAMBLE_TOKENS
    assert (bound.images, bound.outputs, bound.one_prompt) == (1, 1, True)
    assert bound.input_tokens(target()) > estimate_prompt_tokens("responses", request)
