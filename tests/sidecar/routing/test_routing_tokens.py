"""Prompt and output token estimates: conservative, bounded, fast."""

from __future__ import annotations

import time

from sluicegate_sidecar.tokens import (
    FILE_TOKENS,
    IMAGE_TOKENS,
    IMAGE_TOKENS_HIGH,
    estimate_output_tokens_from_chars,
    estimate_prompt_tokens,
)

# 93 words of English prose, 567 characters: about 105 tokens for OpenAI's and Anthropic's
# tokenizers (a token per word plus the punctuation). REAL is that figure.
REAL = 105
PROSE = (
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch, "
    "wondering whether the weather will hold until the harvest is finished next week. "
    "Meanwhile, in the city, engineers are debugging a gateway that routes requests to "
    "several language model providers, keeping spend under a strict monthly budget. "
    "They measure latency, count tokens, and write tests named as sentences so that "
    "anyone reading the suite understands what the system promises to its users. "
    "Nothing here is surprising, but it is all carefully checked, one assertion at a time."
)


def chat(*contents, **extra):
    return {"messages": [{"role": "user", "content": c} for c in contents], **extra}


def test_english_prose_is_estimated_a_little_above_a_real_tokenizer():
    estimate = estimate_prompt_tokens("chat", chat(PROSE))
    assert REAL + 7 <= estimate <= 2 * REAL  # 7: the chat framing of one message


def test_cjk_text_is_not_underestimated():
    text = "这是一个用于测试的中文句子，我们希望估计值足够保守。" * 20  # ~26 chars x 20
    estimate = estimate_prompt_tokens("chat", chat(text))
    assert estimate >= len(text)  # cl100k: roughly one token per character or a little more
    assert estimate <= 2 * len(text)


def test_each_message_adds_its_framing():
    one = estimate_prompt_tokens("chat", chat("hi"))
    three = estimate_prompt_tokens("chat", chat("hi", "hi", "hi"))
    # two more messages: 4 tokens of framing each, plus "user" and "hi" (6 characters) each
    assert three - one == 2 * 4 + 4


def test_images_cost_a_fixed_amount_and_their_base64_is_not_read_as_text():
    bomb = "data:image/png;base64," + "A" * 5_000_000
    low = chat([{"type": "image_url", "image_url": {"url": bomb}}])
    high = chat([{"type": "image_url", "image_url": {"url": bomb, "detail": "high"}}])
    base = estimate_prompt_tokens("chat", chat([]))
    assert estimate_prompt_tokens("chat", low) - base == IMAGE_TOKENS
    assert estimate_prompt_tokens("chat", high) - base == IMAGE_TOKENS_HIGH


def test_anthropic_messages_count_system_tools_and_images():
    request = {
        "system": [{"type": "text", "text": PROSE}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": PROSE},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "A" * 10**6},
                    },
                ],
            }
        ],
        "tools": [{"name": "lookup", "description": "Find a thing", "input_schema": {"type": "object"}}],
    }
    estimate = estimate_prompt_tokens("messages", request)
    assert 2 * REAL + IMAGE_TOKENS_HIGH < estimate < 4 * REAL + IMAGE_TOKENS_HIGH + 100


def test_tool_schemas_count_keys_and_values():
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the current weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "description": "City name"}},
                    "required": ["city"],
                },
            },
        }
    ]
    without = estimate_prompt_tokens("chat", chat("hi"))
    with_tools = estimate_prompt_tokens("chat", chat("hi", tools=tools))
    assert 40 <= with_tools - without <= 120  # ~60 real tokens for such a schema


def test_inline_pdf_counts_by_size_and_a_file_reference_counts_a_floor():
    pdf = chat([{"type": "file", "file": {"file_data": "data:application/pdf;base64," + "A" * 400_000}}])
    ref = chat([{"type": "file", "file": {"file_id": "file-123"}}])
    base = estimate_prompt_tokens("chat", chat([]))
    assert estimate_prompt_tokens("chat", pdf) - base >= 100_000
    assert estimate_prompt_tokens("chat", ref) - base == FILE_TOKENS


def test_completions_prompt_as_text_list_or_token_ids():
    assert estimate_prompt_tokens("completions", {"prompt": [1, 2, 3, 4, 5]}) == 5
    assert estimate_prompt_tokens("completions", {"prompt": [[1, 2], [3, 4, 5]]}) == 5
    text = estimate_prompt_tokens("completions", {"prompt": PROSE})
    assert REAL <= text <= 2 * REAL
    assert estimate_prompt_tokens("completions", {"prompt": [PROSE, PROSE]}) == 2 * text


def test_embeddings_input_in_every_shape():
    assert estimate_prompt_tokens("embeddings", {"input": list(range(100))}) == 100
    assert estimate_prompt_tokens("embeddings", {"input": [[1, 2, 3], [4]]}) == 4
    single = estimate_prompt_tokens("embeddings", {"input": PROSE})
    assert REAL <= single <= 2 * REAL
    assert estimate_prompt_tokens("embeddings", {"input": [PROSE, PROSE, PROSE]}) == 3 * single
    assert estimate_prompt_tokens("embeddings", {}) == 0


def test_deeply_nested_content_does_not_hit_the_recursion_limit():
    value: object = "x"
    for _ in range(5_000):
        value = [value]
    assert estimate_prompt_tokens("completions", {"prompt": value}) == 1


def test_a_large_prompt_is_estimated_quickly():
    request = chat(*[PROSE * 20 for _ in range(200)])  # ~2.3 MB of text in 200 messages
    start = time.perf_counter()
    estimate = estimate_prompt_tokens("chat", request)
    assert time.perf_counter() - start < 0.05
    assert estimate > 200 * 20 * REAL


def test_output_tokens_from_characters_round_up():
    assert estimate_output_tokens_from_chars(0) == 0
    assert estimate_output_tokens_from_chars(1) == 1
    assert estimate_output_tokens_from_chars(7) == 2
    assert estimate_output_tokens_from_chars(3_500) == 1_000
    assert estimate_output_tokens_from_chars(-5) == 0


def test_anthropic_text_documents_count_as_text_and_audio_by_size():
    text_doc = chat(
        [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": PROSE}}]
    )
    base = estimate_prompt_tokens("chat", chat([]))
    assert REAL <= estimate_prompt_tokens("chat", text_doc) - base <= 2 * REAL
    audio = chat([{"type": "input_audio", "input_audio": {"data": "A" * 100_000, "format": "wav"}}])
    assert estimate_prompt_tokens("chat", audio) - base == 50 + 100
