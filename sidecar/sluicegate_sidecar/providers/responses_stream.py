"""The Responses API's typed event stream: framing with ``sequence_number``, the error event that
ends a failed stream, and a chat-chunk stream rewritten as Responses events (for upstreams that
speak no Responses API). Pure: bytes in, bytes out.

A stream cut after its first byte ends with an ``error`` event carrying both the documented flat
fields (``code``, ``message``, ``param``) and the nested ``error`` object OpenAI sends, so the
OpenAI SDKs raise instead of returning a truncated answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import msgspec

from .base import BadUpstreamResponse, Usage
from .responses_chat import (
    call_item,
    message_item,
    response_id,
    response_object,
    text_part,
    usage_from_chat,
)
from .responses_reasoning import reasoning_item
from .sse import EventSplitter, event_fields


@runtime_checkable
class NumberedErrors(Protocol):
    """A Responses relay: frames the error event that ends a failed stream as its next event."""

    def error_event(self, message: str, code: str) -> bytes: ...


class ResponsesEvents:
    """Numbers and frames events (``event: <type>`` + ``data: {...}``); ``next_sequence`` is the
    number the next event gets."""

    def __init__(self) -> None:
        self.next_sequence = 0

    def seen(self, sequence_number: int) -> None:
        """An upstream event numbered ``sequence_number`` went to the client unchanged."""
        self.next_sequence = max(self.next_sequence, sequence_number + 1)

    def event(self, kind: str, fields: Mapping[str, Any]) -> bytes:
        payload = {"type": kind, **fields, "sequence_number": self.next_sequence}
        self.next_sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + msgspec.json.encode(payload) + b"\n\n"

    def error_event(self, message: str, code: str) -> bytes:
        """The event that ends a stream which failed after its first byte."""
        error = {"type": "api_error", "code": code, "message": message, "param": None}
        return self.event("error", {"code": code, "message": message, "param": None, "error": error})


@dataclass(slots=True)
class _Item:
    output_index: int
    item_id: str
    call_id: str | None = None  # None: a message or reasoning item
    name: str = ""
    text: str = ""
    open: bool = True
    thinking: dict[str, Any] | None = None  # a reasoning item: its thinking block as it arrives


class ChatToResponses:
    """Rewrites ``chat.completion.chunk`` SSE (one choice, ending in ``[DONE]``) as Responses events.

    ``thinking_blocks`` deltas (keyed by ``index``) become reasoning items: the thinking text streams as
    the item's one summary part, the signature arrives in ``encrypted_content`` with the item's end.

    The stream must carry usage (``stream_options.include_usage``) for ``response.completed`` to
    report it. No ``[DONE]``, no ``response.completed``: the caller ends such a stream with an error.
    """

    def __init__(self, model: str, request: Mapping[str, Any], events: ResponsesEvents) -> None:
        self._model = model
        self._request = request
        self._events = events
        self._splitter = EventSplitter()
        self._id = ""
        self._items: list[_Item] = []
        self._calls: dict[int, _Item] = {}
        self._thinking: dict[object, _Item] = {}
        self._finish: str | None = None
        self._usage: Usage | None = None
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        out: list[bytes] = []
        for raw in self._splitter.feed(data):
            _, payload = event_fields(raw)
            if payload is None or self.done:
                continue
            if payload == b"[DONE]":
                out.append(self._end())
                continue
            try:
                chunk = msgspec.json.decode(payload)
            except msgspec.DecodeError as exc:
                raise BadUpstreamResponse("a stream chunk is not JSON") from exc
            if isinstance(chunk, dict):
                out.append(self._chunk(chunk))
        return b"".join(out)

    def _response(
        self, status: str | None, output: list[dict[str, Any]], usage: Usage | None
    ) -> dict[str, Any]:
        return response_object(
            self._id, self._model, output, usage, self._finish, self._request, status=status
        )

    def _chunk(self, chunk: dict[str, Any]) -> bytes:
        out: list[bytes] = []
        if not self._id:
            self._id = response_id(chunk.get("id"))
            if isinstance(chunk.get("model"), str) and chunk["model"]:
                self._model = chunk["model"]
            created = {"response": self._response("in_progress", [], None)}
            out += [self._events.event("response.created", created)]
            out += [self._events.event("response.in_progress", created)]
        usage = usage_from_chat(chunk.get("usage"))
        if usage is not None:
            self._usage = usage
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            for block in delta.get("thinking_blocks") or ():  # thinking precedes what it led to
                if isinstance(block, dict):
                    out.append(self._reasoning(block))
            if isinstance(delta.get("content"), str) and delta["content"]:
                out.append(self._text(delta["content"]))
            for call in delta.get("tool_calls") or ():
                out.append(self._call(call))
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return b"".join(out)

    def _text(self, text: str) -> bytes:
        out = b""
        item = self._items[-1] if self._items else None
        if item is None or item.call_id is not None or item.thinking is not None or not item.open:
            out += self._close_current()
            item = _Item(len(self._items), f"msg_{self._id[5:]}_{len(self._items)}")
            self._items.append(item)
            added = {"output_index": item.output_index, "item": message_item(item.item_id, "", "in_progress")}
            out += self._events.event("response.output_item.added", added)
            part = {**self._where(item), "part": text_part("")}
            out += self._events.event("response.content_part.added", part)
        item.text += text
        out += self._events.event(
            "response.output_text.delta", {**self._where(item), "delta": text, "logprobs": []}
        )
        return out

    def _reasoning(self, block: Mapping[str, Any]) -> bytes:
        out = b""
        index = block.get("index")
        item = self._thinking.get(index)
        if item is None:
            out += self._close_current()
            output_index = len(self._items)
            kind = "redacted_thinking" if block.get("type") == "redacted_thinking" else "thinking"
            origin = {"origin": block["origin"]} if isinstance(block.get("origin"), str) else {}
            item = _Item(output_index, f"rs_{self._id[5:]}_{output_index}", thinking={"type": kind, **origin})
            self._items.append(item)
            self._thinking[index] = item
            added = {"output_index": output_index, "item": reasoning_item(item.item_id, {}, "in_progress")}
            out += self._events.event("response.output_item.added", added)
            if kind == "thinking":
                part = {**self._summary(item), "part": {"type": "summary_text", "text": ""}}
                out += self._events.event("response.reasoning_summary_part.added", part)
        thinking = item.thinking if item.thinking is not None else {}
        for key in ("signature", "data"):
            if isinstance(block.get(key), str) and block[key]:
                thinking[key] = thinking.get(key, "") + block[key]
        piece = block.get("thinking")
        if isinstance(piece, str) and piece and thinking.get("type") == "thinking":
            item.text += piece
            delta = {**self._summary(item), "delta": piece}
            out += self._events.event("response.reasoning_summary_text.delta", delta)
        return out

    def _summary(self, item: _Item) -> dict[str, Any]:
        return {"item_id": item.item_id, "output_index": item.output_index, "summary_index": 0}

    def _call(self, call: Mapping[str, Any]) -> bytes:
        out = b""
        index = call.get("index", 0)
        function = call.get("function") or {}
        item = self._calls.get(index)
        if item is None:
            out += self._close_current()
            output_index = len(self._items)
            call_id = call.get("id") or f"call_{self._id[5:]}_{output_index}"
            item = _Item(
                output_index, f"fc_{self._id[5:]}_{output_index}", call_id, function.get("name") or ""
            )
            self._items.append(item)
            self._calls[index] = item
            added = {
                "output_index": output_index,
                "item": call_item(item.item_id, call_id, item.name, "", "in_progress"),
            }
            out += self._events.event("response.output_item.added", added)
        piece = function.get("arguments")
        if isinstance(piece, str) and piece:
            item.text += piece
            delta = {"item_id": item.item_id, "output_index": item.output_index, "delta": piece}
            out += self._events.event("response.function_call_arguments.delta", delta)
        return out

    def _where(self, item: _Item) -> dict[str, Any]:
        return {"item_id": item.item_id, "output_index": item.output_index, "content_index": 0}

    def _done_item(self, item: _Item) -> dict[str, Any]:
        if item.thinking is not None:
            block = item.thinking | ({"thinking": item.text} if item.thinking["type"] == "thinking" else {})
            return reasoning_item(item.item_id, block)
        if item.call_id is None:
            return message_item(item.item_id, item.text)
        return call_item(item.item_id, item.call_id, item.name, item.text)

    def _close_current(self) -> bytes:
        item = self._items[-1] if self._items else None
        if item is None or not item.open:
            return b""
        item.open = False
        out = b""
        if item.thinking is not None:
            if item.thinking["type"] == "thinking":
                where = self._summary(item)
                done = {**where, "text": item.text}
                out += self._events.event("response.reasoning_summary_text.done", done)
                part = {**where, "part": {"type": "summary_text", "text": item.text}}
                out += self._events.event("response.reasoning_summary_part.done", part)
        elif item.call_id is None:
            where = self._where(item)
            out += self._events.event(
                "response.output_text.done", {**where, "text": item.text, "logprobs": []}
            )
            out += self._events.event("response.content_part.done", {**where, "part": text_part(item.text)})
        else:
            done = {"item_id": item.item_id, "output_index": item.output_index, "name": item.name}
            out += self._events.event(
                "response.function_call_arguments.done", done | {"arguments": item.text}
            )
        finished = {"output_index": item.output_index, "item": self._done_item(item)}
        return out + self._events.event("response.output_item.done", finished)

    def _end(self) -> bytes:
        self.done = True
        if not self._id:
            self._id = response_id(None)
        out = self._close_current()
        final = self._response(None, [self._done_item(i) for i in self._items], self._usage)
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return out + self._events.event(kind, {"response": final})
