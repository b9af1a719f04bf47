"""A model's own output limit at render time: declared ``maxOutputTokens`` wins, else the bundled
table of documented limits (dated snapshots resolve to their family), else unknown."""

from __future__ import annotations

import pytest

from sluicegate_operator.outputlimits import known_output_limit


@pytest.mark.parametrize(
    ("kind", "model", "limit"),
    [
        ("openai", "gpt-4o", 16_384),
        ("openai", "gpt-4o-2024-08-06", 16_384),
        ("openai", "gpt-4o-2024-05-13", 4_096),  # a snapshot listed on its own
        ("openai", "o3-mini-2025-01-31", 100_000),
        ("openai", "gpt-5-chat-latest", 16_384),
        ("openai", "gpt-3.5-turbo-0125", 4_096),
        ("azure-openai", "gpt-4.1-mini", 32_768),
        ("anthropic", "claude-3-5-haiku-20241022", 8_192),
        ("anthropic", "claude-opus-4-1-20250805", 32_000),
        ("gemini", "gemini-2.0-flash-001", 8_192),
        ("gemini", "gemini-2.5-pro", 65_536),
    ],
)
def test_documented_models_and_their_snapshots_have_their_output_limit(
    kind: str, model: str, limit: int
) -> None:
    assert known_output_limit(kind, model) == limit


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("openai", "ft:gpt-4o-mini-2024-07-18:acme::9x2k"),
        ("openai", "text-embedding-3-small"),
        ("mistral", "mistral-small-latest"),
        ("openai-compatible", "llama-3.1-8b"),
        ("gemini", "gemini-2.5-flash-preview-05-20"),
    ],
)
def test_a_model_the_table_does_not_list_has_no_known_limit(kind: str, model: str) -> None:
    assert known_output_limit(kind, model) is None
