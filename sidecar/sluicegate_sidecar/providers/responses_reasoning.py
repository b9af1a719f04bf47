"""Reasoning items ⇄ Anthropic's thinking blocks, for Responses translated through chat. Pure.

Reasoning crosses the chat hop as ``thinking_blocks`` on an assistant message (a reply's, a stream
delta's keyed by ``index``, or one rebuilt from an input reasoning item). A reasoning item carries the
thinking text as its one summary part and the block's ``signature`` as its ``encrypted_content``
prefixed ``anthropic.thinking:`` (always, not only when ``include`` asks: no state is kept on this
path, and Anthropic needs the signed block back on the next turn of a tool loop); a
``redacted_thinking`` block's data is its ``encrypted_content`` prefixed
``anthropic.redacted_thinking:``. Input reasoning items without such ``encrypted_content`` (OpenAI's
own, from a turn another connection answered, or stripped by the client) cannot be rebuilt and are
dropped, as Anthropic would refuse a signature it did not make.

Gemini's thoughts cross as the same ``thinking`` blocks marked ``"origin": "gemini"``: the thought
summary as the text and, when the model called a function, that call's ``thoughtSignature`` as the
signature, sealed as ``gemini.thought_signature:``. Each adapter rebuilds only its own origin's items.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

THINKING = "anthropic.thinking:"  # prefixes a thinking block's signature in encrypted_content
REDACTED = "anthropic.redacted_thinking:"  # prefixes a redacted_thinking block's data
GEMINI = "gemini.thought_signature:"  # prefixes a Gemini thoughtSignature
Origin = Literal["anthropic", "gemini"]


def thinking_block(item: Mapping[str, Any], origin: Origin = "anthropic") -> dict[str, Any] | None:
    """An input reasoning item as a thinking block of ``origin`` (None: ``origin`` did not seal it)."""
    sealed = item.get("encrypted_content")
    if not isinstance(sealed, str):
        return None
    if origin == "anthropic" and sealed.startswith(REDACTED):
        return {"type": "redacted_thinking", "data": sealed.removeprefix(REDACTED)}
    prefix = THINKING if origin == "anthropic" else GEMINI
    if not sealed.startswith(prefix):
        return None
    summary = item.get("summary")
    parts = summary if isinstance(summary, list) else []
    text = "".join(str(p.get("text") or "") for p in parts if isinstance(p, dict))
    block = {"type": "thinking", "thinking": text, "signature": sealed.removeprefix(prefix)}
    return block | ({"origin": "gemini"} if origin == "gemini" else {})


def reasoning_item(item_id: str, block: Mapping[str, Any], status: str = "completed") -> dict[str, Any]:
    """A thinking (or redacted_thinking) block as a reasoning output item."""
    text = block.get("thinking")
    done = isinstance(text, str) and status == "completed"
    summary = [{"type": "summary_text", "text": text}] if done else []
    if block.get("type") == "redacted_thinking":
        data = block.get("data")
        sealed: str | None = REDACTED + data if isinstance(data, str) else None
    else:
        signature = block.get("signature")
        prefix = GEMINI if block.get("origin") == "gemini" else THINKING
        sealed = prefix + signature if isinstance(signature, str) and signature else None
    item = {"id": item_id, "type": "reasoning", "summary": summary, "encrypted_content": sealed}
    return item | {"status": status}
