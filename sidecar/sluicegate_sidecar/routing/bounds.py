"""Upper bounds of what one request can consume, for its budget reservation. Pure.

``tokens.estimate_prompt_tokens`` is a cheap *estimate* (``auto``, candidate order, context checks);
dense text (digits, base64, CJK, emoji) beats it by 2x. A reservation needs a *bound*: every byte-level
BPE tokenizer (OpenAI's, Anthropic's; SentencePiece with byte fallback, Gemini's) spends at least one
UTF-8 byte per token, so the byte count of the text bounds its tokens from above, whatever the text.
Images count a per-provider maximum, tool schemas the bytes of their JSON, and the outputs are every
completion the request can produce (``n``, ``best_of``, one per prompt of a prompt array).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ..providers.base import Operation
from ..providers.gemini_request import THINKING_BUDGETS
from ..tokens import PER_MESSAGE_TOKENS, PER_TOOL_TOKENS, REPLY_PRIMING_TOKENS, media_tokens
from .catalog import Target

# Per-image maxima, in input tokens, from each provider's documented image costs.
# OpenAI: tile models at most 85 + 170 x 8 tiles = 1,445 (o1/o3: 1,275); patch models at most 1,536
# patches x 2.46 (gpt-4.1-nano, gpt-5-nano) = 3,779. gpt-4o-mini counts 2,833 + 5,667 per tile (its
# image tokens are inflated 33x to price images like gpt-4o): 48,169 for 8 tiles.
OPENAI_IMAGE_TOKENS = 3_780
GPT_4O_MINI_IMAGE_TOKENS = 48_169
# Anthropic scales every image down to ~1.15 megapixels, "about 1,600 tokens" (width x height / 750).
ANTHROPIC_IMAGE_TOKENS = 1_600
# Everything else: Gemini (at most 16 tiles of 768 px at 258 tokens = 4,128) and Mistral (1,024 x 1,024
# px in 16-px patches plus row breaks = 4,160).
OTHER_IMAGE_TOKENS = 4_160
# Tools make providers add instructions once per request (Anthropic: 159-530 tokens by model).
TOOLS_PREAMBLE_TOKENS = 600
# OpenAI's Responses API refuses a ``max_output_tokens`` below 16 (400 ``integer_below_min_value``), on
# Azure OpenAI too; chat and the other providers take any cap from 1.
RESPONSES_MIN_OUTPUT_TOKENS = 16

_SCHEMA_FIELDS = ("tools", "functions", "response_format", "output_format", "tool_choice")
_IMAGE_TYPES = frozenset({"image_url", "input_image", "image"})


class RequestBound(msgspec.Struct, frozen=True, gc=False):
    """What a request can consume at most, apart from the model: text tokens, images, outputs.

    ``text_tokens`` includes message and tool overheads; ``outputs`` is how many completions it can
    produce (0 for embeddings); ``one_prompt`` says the input is one model input, so it cannot exceed
    the model's context window (a longer one is refused by the provider, unbilled).
    """

    text_tokens: int
    images: int = 0
    outputs: int = 1
    one_prompt: bool = True

    def input_tokens(self, target: Target) -> int:
        """The most input tokens this request can be billed for on ``target``."""
        total = self.text_tokens + self.images * image_tokens(target.provider, target.model)
        window = target.spec.context_window
        if self.one_prompt and window is not None:
            total = min(total, window)
        return total


def least_output_cap(op: Operation, provider: str) -> int:
    """The smallest output cap ``provider`` accepts for ``op``: a budget that leaves room for fewer
    output tokens refuses the attempt (402) rather than send a cap the upstream answers with a 400."""
    if op == "responses" and provider in ("openai", "azure-openai"):
        return RESPONSES_MIN_OUTPUT_TOKENS
    return 1


def needs_output_cap(op: Operation, provider: str, request: Mapping[str, Any]) -> bool:
    """Whether the upstream request must carry an output cap when neither the client nor the budget
    set one (the model's own limit is sent): Anthropic's Messages always takes one, and a Gemini
    thinking budget for a Responses call with reasoning is carved out of one."""
    if op not in ("chat", "responses"):
        return False
    if provider == "anthropic":
        return True
    reasoning = request.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    return provider == "gemini" and op == "responses" and effort in THINKING_BUDGETS


def image_tokens(provider: str, model: str) -> int:
    """The most input tokens one image can cost on ``model`` of ``provider``."""
    if provider in ("openai", "azure-openai"):
        return GPT_4O_MINI_IMAGE_TOKENS if "gpt-4o-mini" in model else OPENAI_IMAGE_TOKENS
    if provider == "anthropic":
        return ANTHROPIC_IMAGE_TOKENS
    return OTHER_IMAGE_TOKENS


def _bytes_of(root: object) -> tuple[int, int]:
    """(token bound of the text and numbers in ``root``, images in it). Iterative, like ``tokens``."""
    total = 0
    images = 0
    stack: list[object] = [root]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            total += len(value.encode("utf-8", "surrogatepass"))
        elif isinstance(value, dict):
            if value.get("type") in _IMAGE_TYPES:
                images += 1
                continue
            media = media_tokens(value)  # audio, files: the estimate's own (rough) charge
            if media is not None:
                total += media
                continue
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif value is not None:  # a number: one token id in a token-id prompt, else a few bytes
            total += 1 if isinstance(value, int) else len(str(value))
    return total, images


def _json_bytes(value: object) -> int:
    try:
        return len(msgspec.json.encode(value))
    except (TypeError, msgspec.EncodeError):  # cannot happen for a decoded body; stay conservative
        return len(str(value).encode())


def _prompt_count(prompt: object) -> int:
    """Prompts in a completions ``prompt``: a string or one token-id list is one; a list of them, each."""
    if isinstance(prompt, list) and prompt and not all(isinstance(p, int) for p in prompt):
        return len(prompt)
    return 1


def output_count(op: Operation, request: Mapping[str, Any], n: int, best_of: int | None) -> int:
    """Completions the request can produce (each billed): 0 for embeddings, ``n`` for chat, and
    prompts x max(n, best_of) for completions (``best_of`` candidates are generated and billed)."""
    if op == "embeddings":
        return 0
    if op == "completions":
        return _prompt_count(request.get("prompt")) * max(n, best_of or 1)
    if op in ("messages", "responses"):
        return 1
    return n


def request_bound(op: Operation, request: Mapping[str, Any], n: int, best_of: int | None) -> RequestBound:
    """The upper bound of a decoded request body (see the module docstring)."""
    outputs = output_count(op, request, n, best_of)
    if op in ("chat", "messages"):
        messages = request.get("messages")
        text, images = _bytes_of(messages)
        count = len(messages) if isinstance(messages, list) else 0
        text += PER_MESSAGE_TOKENS * count + REPLY_PRIMING_TOKENS
        system = request.get("system")
        if system is not None:
            more, more_images = _bytes_of(system)
            text, images = text + more + PER_MESSAGE_TOKENS, images + more_images
        tools = 0
        for field in _SCHEMA_FIELDS:
            value = request.get(field)
            if value is not None:
                text += _json_bytes(value)
                if field in ("tools", "functions") and isinstance(value, list):
                    tools += len(value)
        if tools:
            text += TOOLS_PREAMBLE_TOKENS + PER_TOOL_TOKENS * tools
        return RequestBound(text, images, outputs, one_prompt=True)
    if op == "responses":
        return _responses_bound(request, outputs)
    if op == "completions":
        prompt = request.get("prompt")
        text, _ = _bytes_of(prompt)
        suffix, _ = _bytes_of(request.get("suffix"))
        return RequestBound(text + suffix, 0, outputs, one_prompt=_prompt_count(prompt) == 1)
    text, _ = _bytes_of(request.get("input"))
    return RequestBound(text, 0, outputs, one_prompt=isinstance(request.get("input"), str))


def _responses_bound(request: Mapping[str, Any], outputs: int) -> RequestBound:
    """The Responses API: ``input`` (a string or items), ``instructions``, and the JSON of its tools,
    tool choice and ``text.format``, with the chat overheads."""
    items = request.get("input")
    text, images = _bytes_of(items)
    text += PER_MESSAGE_TOKENS * max(1, len(items) if isinstance(items, list) else 1) + REPLY_PRIMING_TOKENS
    instructions = request.get("instructions")
    if instructions is not None:
        more, more_images = _bytes_of(instructions)
        text, images = text + more + PER_MESSAGE_TOKENS, images + more_images
    for field in ("tools", "tool_choice", "text"):
        value = request.get(field)
        if value is not None:
            text += _json_bytes(value)
    tools = request.get("tools")
    if isinstance(tools, list) and tools:
        text += TOOLS_PREAMBLE_TOKENS + PER_TOOL_TOKENS * len(tools)
    return RequestBound(text, images, outputs, one_prompt=True)
