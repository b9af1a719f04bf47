"""Cheap prompt- and output-token estimates for reservations, context checks and ``auto``. Pure.

An upper-ish estimate, not a tokenizer: one pass over the decoded body, ``len`` on strings, no
regular expressions and no tokenizer library. It errs high for typical text; see the rates below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .providers.base import Operation

# Text rates. ASCII: 3.5 characters a token (English runs ~4, code ~3.5); other text is measured
# in UTF-8 bytes at 2.5 bytes a token (CJK: 3 bytes a character, so 1.2 tokens a character).
# Both are applied as exact integer fractions: ceil(chars * 2 / 7) and ceil(bytes * 2 / 5).
PER_MESSAGE_TOKENS = 4  # role and separators around each chat message
REPLY_PRIMING_TOKENS = 3  # the assistant turn the provider opens for the reply
PER_TOOL_TOKENS = 8  # wrapper around each tool / function declaration
SCALAR_TOKENS = 1  # every number, boolean and null (so token-id arrays count exactly)
# Images: a fixed charge, whatever their size (the body is never decoded). OpenAI low/auto
# detail counts IMAGE_TOKENS; "high" detail and Anthropic images (up to ~1,600) IMAGE_TOKENS_HIGH.
IMAGE_TOKENS = 1_105
IMAGE_TOKENS_HIGH = 2_000
# Inline files and documents (PDFs): one token per 4 base64 characters (3 bytes), at least
# FILE_TOKENS; a file referenced by id counts FILE_TOKENS. Audio: one token per 1,000 base64
# characters plus AUDIO_TOKENS. Both are rough: real costs depend on content the sidecar never parses.
FILE_TOKENS = 2_000
AUDIO_TOKENS = 50

_SCHEMA_FIELDS = ("tools", "functions", "response_format", "output_format", "tool_choice")


def _text_tokens(ascii_chars: int, other_bytes: int) -> int:
    return -(-ascii_chars * 2 // 7) + -(-other_bytes * 2 // 5)


def media_tokens(part: dict[Any, Any]) -> int | None:
    """Fixed tokens for an image, audio or file content part, or None for any other dict."""
    kind = part.get("type")
    if kind == "image_url":
        inner = part.get("image_url")
        detail = inner.get("detail") if isinstance(inner, dict) else None
        return IMAGE_TOKENS_HIGH if detail == "high" else IMAGE_TOKENS
    if kind == "input_image":
        return IMAGE_TOKENS_HIGH if part.get("detail") == "high" else IMAGE_TOKENS
    if kind == "image":
        return IMAGE_TOKENS_HIGH
    if kind == "input_audio":
        inner = part.get("input_audio")
        data = inner.get("data") if isinstance(inner, dict) else None
        return AUDIO_TOKENS + (len(data) // 1_000 if isinstance(data, str) else 0)
    if kind in ("file", "input_file"):
        inner = part.get("file") if kind == "file" else part
        data = inner.get("file_data") if isinstance(inner, dict) else None
        return max(FILE_TOKENS, len(data) // 4) if isinstance(data, str) else FILE_TOKENS
    if kind == "document":
        source = part.get("source")
        if isinstance(source, dict) and source.get("type") in ("text", "content"):
            return None  # plain text: counted like any other text
        data = source.get("data") if isinstance(source, dict) else None
        return max(FILE_TOKENS, len(data) // 4) if isinstance(data, str) else FILE_TOKENS
    return None


def _tally(root: object, *, count_keys: bool) -> int:
    """Tokens in a decoded JSON value: text by the rates above, scalars, media parts.

    Iterative (no recursion limit to hit on deep bodies). ``count_keys`` counts dict keys as text,
    for JSON schemas where the keys are part of what the model reads.
    """
    ascii_chars = 0
    other_bytes = 0
    fixed = 0
    stack: list[object] = [root]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if value.isascii():
                ascii_chars += len(value)
            else:
                other_bytes += len(value.encode("utf-8", "surrogatepass"))
        elif isinstance(value, dict):
            media = media_tokens(value)
            if media is not None:
                fixed += media
                continue
            if count_keys:
                for key in value:
                    ascii_chars += len(key) if isinstance(key, str) else 1
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        else:  # numbers, booleans, null
            fixed += SCALAR_TOKENS
    return _text_tokens(ascii_chars, other_bytes) + fixed


def _count(value: object) -> int:
    return len(value) if isinstance(value, list) else 0


def estimate_prompt_tokens(op: Operation, request: Mapping[str, Any]) -> int:
    """An upper-ish estimate of the prompt tokens of a decoded request body.

    chat / messages: message text (roles, names, tool calls and results included), the Anthropic
    ``system`` field, tool and response-format schemas, fixed image charges, plus per-message and
    per-tool overheads. completions: ``prompt`` (and ``suffix``); embeddings: ``input``. Prompts
    given as token-id arrays (lists of ints, or lists of them) count one token per id, exactly.
    """
    if op in ("chat", "messages"):
        messages = request.get("messages")
        total = _tally(messages, count_keys=False) if messages is not None else 0
        total += PER_MESSAGE_TOKENS * _count(messages) + REPLY_PRIMING_TOKENS
        system = request.get("system")
        if system is not None:
            total += _tally(system, count_keys=False) + PER_MESSAGE_TOKENS
        for field in _SCHEMA_FIELDS:
            value = request.get(field)
            if value is not None:
                total += _tally(value, count_keys=True)
        total += PER_TOOL_TOKENS * (_count(request.get("tools")) + _count(request.get("functions")))
        return total
    if op == "responses":
        return _responses_prompt_tokens(request)
    if op == "completions":
        total = 0
        for field in ("prompt", "suffix"):
            value = request.get(field)
            if value is not None:
                total += _tally(value, count_keys=False)
        return total
    value = request.get("input")
    return _tally(value, count_keys=False) if value is not None else 0


def _responses_prompt_tokens(request: Mapping[str, Any]) -> int:
    """The Responses API: ``input`` (a string or items), ``instructions``, tools and ``text.format``
    schemas, with the chat overheads per input item and per tool."""
    value = request.get("input")
    total = _tally(value, count_keys=False) if value is not None else 0
    total += PER_MESSAGE_TOKENS * max(1, _count(value)) + REPLY_PRIMING_TOKENS
    instructions = request.get("instructions")
    if instructions is not None:
        total += _tally(instructions, count_keys=False) + PER_MESSAGE_TOKENS
    for field in ("tools", "text", "tool_choice"):
        schema = request.get(field)
        if schema is not None:
            total += _tally(schema, count_keys=True)
    return total + PER_TOOL_TOKENS * _count(request.get("tools"))


def estimate_output_tokens_from_chars(chars: int) -> int:
    """Tokens for ``chars`` characters of generated text, rounded up (3.5 characters a token).

    Used when a stream ends without reported usage. Passing the UTF-8 byte count of the text
    instead of its character count errs higher for non-ASCII output, which is the safe side.
    """
    return -(-max(chars, 0) * 2 // 7)
