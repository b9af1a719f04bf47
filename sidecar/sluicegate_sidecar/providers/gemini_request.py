"""Gemini request translation: OpenAI chat completions and embeddings requests → generateContent and
batchEmbedContents bodies. Pure; model names are validated here before they go into a URL.
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


def _function_call(call: object, first: bool, names: dict[str, str]) -> dict[str, Any]:
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
    if first:
        part["thoughtSignature"] = THOUGHT_SIGNATURE_SENTINEL
    return part


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
            parts.extend(_function_call(call, i == 0, names) for i, call in enumerate(calls))
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


def generate_content_body(request: Mapping[str, Any]) -> dict[str, Any]:
    """A chat.completions request as a generateContent request."""
    system, turns = contents(request.get("messages"))
    body: dict[str, Any] = {"contents": turns}
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.get("tools"):
        body["tools"] = _tools(request["tools"])
        if request.get("tool_choice") is not None:
            body["toolConfig"] = _tool_config(request["tool_choice"])
    config = _generation_config(request)
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
