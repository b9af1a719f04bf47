"""Gemini request translation: OpenAI chat completions and embeddings requests → generateContent and
batchEmbedContents bodies. Pure; model names are validated here before they go into a URL.

Thinking (``thinking=True``: requests translated from the Responses API) follows ``reasoning_effort``
with ``includeThoughts`` on. Gemini 3 models get a ``thinkingLevel`` (``low`` or ``high``, the levels
every Gemini 3 model takes), other models a ``thinkingBudget`` (``THINKING_BUDGETS``, within every
Gemini 2.5 model's range). Thinking tokens are output: a budget is carved out of the output cap
(``maxOutputTokens`` = cap - budget, the budget at most half the cap), so thinking and text together
stay within the cap the reservation was made for whether or not Gemini counts thoughts against
``maxOutputTokens``; with less than ``LEAST_THINKING`` tokens to carve, no ``thinkingConfig`` is sent.
A ``thinkingLevel`` carries no token count: there ``maxOutputTokens`` (the cap, unchanged) is the bound
(Gemini 3 counts thoughts against it, and thinks at ``high`` by default anyway).
An assistant message's Gemini ``thinking_blocks`` give its first function call the signature back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .base import UnsupportedOperation
from .openai import decode_json
from .openai_request import output_cap

# OpenAI clients cannot carry Gemini 3's thought signatures back; this documented sentinel lets a
# replayed function call through signature validation.
THOUGHT_SIGNATURE_SENTINEL = "skip_thought_signature_validator"
THINKING_BUDGETS = {"minimal": 512, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 24576}
THINKING_LEVELS = {"minimal": "low", "low": "low", "medium": "high", "high": "high", "xhigh": "high"}
LEAST_THINKING = 512  # the smallest budget every Gemini 2.5 model accepts (Flash-Lite's floor)
_LEVELED = re.compile(r"(?:models/)?gemini-(\d+)")
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_MIME_BY_SUFFIX = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".pdf": "application/pdf",
}


def _fail(message: str) -> UnsupportedOperation:
    return UnsupportedOperation(message)


def model_path(model: str) -> str:
    """``models/<model>`` after checking the name can go into a URL as is."""
    name = model.removeprefix("models/")
    if not _MODEL.fullmatch(name) or ".." in name:
        raise _fail(f"{model!r} is not a valid Gemini model name")
    return f"models/{name}"


def _media_part(url: object) -> dict[str, Any]:
    if not isinstance(url, str):
        raise _fail("an image_url part needs a url string")
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if encoding != "base64" or not mime or not data:
            raise _fail("data: URLs must be base64-encoded and name a media type")
        return {"inlineData": {"mimeType": mime, "data": data}}
    if url.startswith(("https://", "http://")):
        path = url.split("?", 1)[0].split("#", 1)[0].lower()
        guessed = next((m for suffix, m in _MIME_BY_SUFFIX.items() if path.endswith(suffix)), None)
        return {"fileData": {"fileUri": url, **({"mimeType": guessed} if guessed else {})}}
    raise _fail("image URLs must be data:, http: or https: URLs")


def _parts(content: object, *, media: bool = True) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise _fail("message content must be a string or a list of parts")
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal") and isinstance(part.get(kind), str):
            if part[kind]:
                parts.append({"text": part[kind]})
        elif kind == "image_url" and media:
            image = part.get("image_url")
            parts.append(_media_part(image.get("url") if isinstance(image, dict) else image))
        elif kind == "file" and media and isinstance(part.get("file"), dict):
            parts.append(_media_part(part["file"].get("file_data")))
        else:
            raise _fail(f"gemini connections do not accept {kind!r} content parts here")
    return parts


def _text(content: object) -> str:
    return "".join(part.get("text", "") for part in _parts(content, media=False))


def _function_call(call: object, first: str | None, names: dict[str, str]) -> dict[str, Any]:
    """A tool call as a functionCall part; ``first``: the signature the turn's first call carries."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise _fail("tool_calls entries need a function with a name")
    if isinstance(call, dict) and isinstance(call.get("id"), str):
        names[call["id"]] = function["name"]
    arguments = function.get("arguments") or "{}"
    args = decode_json(arguments.encode()) if isinstance(arguments, str) else arguments
    if not isinstance(args, dict):
        raise _fail("tool call arguments must be a JSON object")
    part: dict[str, Any] = {"functionCall": {"name": function["name"], "args": args}}
    if first is not None:
        part["thoughtSignature"] = first
    return part


def _signature(message: Mapping[str, Any]) -> str:
    """The thought signature of an assistant turn: Gemini's own, from its reasoning item, else the
    sentinel."""
    for block in message.get("thinking_blocks") or ():
        if isinstance(block, dict) and block.get("origin") == "gemini":
            signature = block.get("signature")
            if isinstance(signature, str) and signature:
                return signature
    return THOUGHT_SIGNATURE_SENTINEL


def _function_response(message: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    name = names.get(message.get("tool_call_id") or "") or message.get("name")
    if not isinstance(name, str):
        raise _fail("a tool message answers no earlier tool call (unknown tool_call_id)")
    text = _text(message.get("content"))
    decoded = decode_json(text.encode()) if text.startswith("{") else None
    response = decoded if isinstance(decoded, dict) else {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


def contents(messages: object) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System instruction parts and ``contents`` (roles user/model, consecutive same roles merged)."""
    if not isinstance(messages, list):
        raise _fail("messages must be a list")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call id → function name, as of the latest assistant turn
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            system.extend(_parts(message.get("content"), media=False))
            continue
        if role == "user":
            parts = _parts(message.get("content"))
        elif role == "assistant":
            role, parts = "model", _parts(message.get("content"), media=False)
            calls = message.get("tool_calls") or []
            signature = _signature(message)
            parts.extend(
                _function_call(call, signature if i == 0 else None, names) for i, call in enumerate(calls)
            )
        elif role == "tool":
            role, parts = "user", [_function_response(message, names)]
        else:
            raise _fail(f"gemini connections do not accept {role!r} messages")
        if not parts:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["parts"].extend(parts)
        else:
            turns.append({"role": role, "parts": parts})
    return system, turns


def _generation_config(request: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    cap = output_cap(request)
    if cap is not None:
        config["maxOutputTokens"] = cap
    for source, target in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if isinstance(request.get(source), int | float) and not isinstance(request.get(source), bool):
            config[target] = request[source]
    stop = request.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = request.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if isinstance(response_format, dict) and kind in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
        if schema is not None:
            config["responseJsonSchema"] = schema
    return config


def _tools(tools: object) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _fail("tools must be a list")
    declarations = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict):
            raise _fail("gemini connections accept only function tools")
        declaration: dict[str, Any] = {"name": function.get("name")}
        if function.get("description"):
            declaration["description"] = function["description"]
        if function.get("parameters"):
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}]


def _tool_config(choice: object) -> dict[str, Any]:
    if choice in ("auto", "none", "required"):
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}[str(choice)]
        return {"functionCallingConfig": {"mode": mode}}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    raise _fail("unsupported tool_choice")


def thinking_config(effort: object, model: str, cap: int | None) -> tuple[dict[str, Any] | None, int | None]:
    """The ``thinkingConfig`` for a reasoning effort and the ``maxOutputTokens`` to send with it
    (None, ``cap``: thinking left as the model's default)."""
    if not isinstance(effort, str) or effort not in THINKING_BUDGETS:
        return None, cap
    family = _LEVELED.match(model)
    if family is not None and int(family.group(1)) >= 3:
        return {"includeThoughts": True, "thinkingLevel": THINKING_LEVELS[effort]}, cap
    budget = THINKING_BUDGETS[effort] if cap is None else min(THINKING_BUDGETS[effort], cap // 2)
    if budget < LEAST_THINKING:
        return None, cap
    return {"includeThoughts": True, "thinkingBudget": budget}, None if cap is None else cap - budget


def generate_content_body(
    request: Mapping[str, Any], model: str = "", *, thinking: bool = False
) -> dict[str, Any]:
    """A chat.completions request as a generateContent request; ``thinking``: ``reasoning_effort``
    sets the thinking config (the Responses API's ``reasoning``; chat requests keep the default)."""
    system, turns = contents(request.get("messages"))
    body: dict[str, Any] = {"contents": turns}
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.get("tools"):
        body["tools"] = _tools(request["tools"])
        if request.get("tool_choice") is not None:
            body["toolConfig"] = _tool_config(request["tool_choice"])
    config = _generation_config(request)
    if thinking:
        settings, cap = thinking_config(request.get("reasoning_effort"), model, config.get("maxOutputTokens"))
        if settings is not None:
            config["thinkingConfig"] = settings
        if cap is not None:
            config["maxOutputTokens"] = cap
    if config:
        body["generationConfig"] = config
    return body


def embed_body(model: str, request: Mapping[str, Any]) -> dict[str, Any]:
    texts = request.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
        raise _fail("gemini embeddings take a string or a list of strings as input")
    extra = (
        {"outputDimensionality": request["dimensions"]} if isinstance(request.get("dimensions"), int) else {}
    )
    path = model_path(model)
    return {"requests": [{"model": path, "content": {"parts": [{"text": text}]}, **extra} for text in texts]}
