"""The built-in offline provider's adapter: OpenAI's wire format for chat, completions and embeddings,
Anthropic's for Messages and token counts, so every client works offline (`make run`). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .anthropic import AnthropicAdapter
from .base import (
    NO_HEADERS,
    Adapter,
    Connection,
    Operation,
    Reply,
    StreamRelay,
    UpstreamErrorInfo,
    UpstreamRequest,
)
from .compatible import MOCK_BASE_URL, compatible_adapter
from .keyscrub import NO_KEY, KeyScrubber
from .openai import decode_json

_ANTHROPIC_OPS = frozenset({"messages", "count_tokens"})


@dataclass(frozen=True, slots=True)
class MockAdapter:
    provider: str = "mock"

    def _for(self, op: Operation) -> Adapter:
        return AnthropicAdapter() if op in _ANTHROPIC_OPS else compatible_adapter("mock")

    def build(
        self,
        op: Operation,
        conn: Connection,
        model: str,
        request: Mapping[str, Any],
        *,
        stream: bool,
        client_headers: Mapping[str, str] = NO_HEADERS,
    ) -> UpstreamRequest:
        if op in _ANTHROPIC_OPS:  # Anthropic's paths hang off the root, not off ``/v1``
            root = (conn.base_url or MOCK_BASE_URL).rstrip("/").removesuffix("/v1")
            conn = replace(conn, base_url=root)
        return self._for(op).build(op, conn, model, request, stream=stream, client_headers=client_headers)

    def parse(self, op: Operation, model: str, body: bytes) -> Reply:
        return self._for(op).parse(op, model, body)

    def relay(
        self, op: Operation, model: str, request: Mapping[str, Any], *, scrubber: KeyScrubber = NO_KEY
    ) -> StreamRelay:
        return self._for(op).relay(op, model, request, scrubber=scrubber)

    def parse_error(self, status: int, body: bytes, *, scrubber: KeyScrubber = NO_KEY) -> UpstreamErrorInfo:
        payload = decode_json(body)
        anthropic = isinstance(payload, dict) and payload.get("type") == "error"
        adapter: Adapter = AnthropicAdapter() if anthropic else compatible_adapter("mock")
        return adapter.parse_error(status, body, scrubber=scrubber)
