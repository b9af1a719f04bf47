"""The provider interface: build an upstream request from a client request; read the reply back.

Pure: no HTTP library, no clock, no I/O. One module per provider implements ``Adapter``;
``registry.py`` maps a provider kind to its adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

import msgspec

from .keyscrub import NO_KEY, KeyScrubber

# chat: POST /v1/chat/completions, completions: POST /v1/completions,
# embeddings: POST /v1/embeddings, messages: POST /v1/messages (Anthropic-native clients),
# responses: POST /v1/responses (OpenAI's Responses API),
# count_tokens: POST /v1/messages/count_tokens (free: never reserved, charged or in the ledger).
Operation = Literal["chat", "completions", "embeddings", "messages", "responses", "count_tokens"]
NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class ReportedUsage(msgspec.Struct, frozen=True, gc=False):
    """What a provider reported in a usage no correct provider reports, figure by figure, for the
    ledger: None where a figure was missing or not an integer (``Usage`` has 0 there)."""

    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None


class Usage(msgspec.Struct, frozen=True, gc=False):
    """Token usage as the provider reported it.

    ``input_tokens`` counts every prompt token, cached reads and cache writes included;
    ``cached_input_tokens`` and ``cache_write_tokens`` are the parts of it billed at other rates;
    ``reasoning_tokens`` is the part of ``output_tokens`` spent thinking (where the provider counts it
    apart: Gemini's ``thoughtsTokenCount``), billed as output like the rest.
    ``anomaly`` names why the report cannot be right (``providers.usagefields``): the figures are
    then the valid ones, 0 where a figure was unusable, and ``reported`` keeps what was sent.
    """

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    anomaly: str | None = None
    reported: ReportedUsage | None = None
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Connection:
    """What an adapter needs of one configured connection, its key already decrypted.

    ``scrubber`` is built from the key with the connection (when the config loads): it keeps the key
    out of the upstream texts passed on to the client.
    """

    name: str
    provider: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    azure_api_version: str | None = None
    azure_deployments: Mapping[str, str] = field(default_factory=dict)
    scrubber: KeyScrubber = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scrubber", KeyScrubber(self.api_key))


class UpstreamRequest(msgspec.Struct, frozen=True, gc=False):
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


class Reply(msgspec.Struct, frozen=True, gc=False):
    """A complete (non-streaming) upstream reply, in the client's wire format."""

    body: bytes
    usage: Usage | None
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class UpstreamErrorInfo:
    """A provider error turned into the OpenAI error envelope's fields (never holds key material)."""

    message: str
    type: str
    code: str | None = None


class UnsupportedOperation(Exception):
    """The provider has no equivalent of the requested operation or feature (client gets 400)."""


class BadUpstreamResponse(Exception):
    """The upstream answered 2xx with something that is not a valid reply (client gets 502)."""


class StreamRelay(Protocol):
    """Turns an upstream byte stream into the client's SSE stream, chunk by chunk.

    ``feed`` takes raw upstream bytes (arbitrarily split) and returns the bytes to send to the
    client now (possibly ``b""``). ``finish`` is called once when the upstream closes and returns
    any last bytes (for OpenAI clients it ends with ``data: [DONE]\\n\\n``). Raises
    ``BadUpstreamResponse`` on input that cannot be a valid stream.
    """

    @property
    def usage(self) -> Usage | None: ...

    @property
    def completed(self) -> bool:
        """True once the upstream signalled a proper end (finish reason / message_stop / [DONE])."""
        ...

    @property
    def output_chars(self) -> int:
        """Characters of generated text seen so far, for estimating usage when none is reported."""
        ...

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class Adapter(Protocol):
    """One provider's translation. ``request`` is the client's decoded JSON body."""

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
        """The upstream request for ``model`` (the provider's own model name).

        ``client_headers`` are the client's request headers (names lower-cased); an adapter
        forwards only the few its provider defines for clients (Anthropic: ``anthropic-beta``,
        ``anthropic-version``), never credentials or routing.

        For streams the adapter asks the upstream for usage (``stream_options.include_usage``
        for OpenAI-style APIs) whatever the client asked; the relay drops it again if the client
        did not ask. Strips client fields that could pick the upstream or its credentials.
        """
        ...

    def parse(self, op: Operation, model: str, body: bytes) -> Reply:
        """A 2xx upstream body → the client's format plus usage. Raises ``BadUpstreamResponse``."""
        ...

    def relay(
        self, op: Operation, model: str, request: Mapping[str, Any], *, scrubber: KeyScrubber = NO_KEY
    ) -> StreamRelay:
        """A fresh relay for one streamed reply to ``request``. An error event the upstream sends
        reaches the client only as error fields ``scrubber`` has cleaned (the connection's)."""
        ...

    def parse_error(self, status: int, body: bytes, *, scrubber: KeyScrubber = NO_KEY) -> UpstreamErrorInfo:
        """A non-2xx upstream body → error fields safe to show the client (``scrubber``: the
        connection's, which removes its key's fragments)."""
        ...


def smaller_cap(*caps: object) -> int | None:
    """The output cap a request sets: the smallest of its cap fields (``max_tokens``,
    ``max_completion_tokens``, ``max_output_tokens``), None when none is an integer. The one rule for
    the client's cap, on raw or decoded fields."""
    present = [cap for cap in caps if isinstance(cap, int) and not isinstance(cap, bool)]
    return min(present) if present else None
