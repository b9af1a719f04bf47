"""Fake provider servers on loopback, speaking each provider's real wire format (test support).

    from tests.support.fakes import FakeOpenAI, FakeAzureOpenAI, FakeAnthropic, FakeGemini, Fault, FakeUsage

    with FakeOpenAI(api_key="sk-test") as fake:        # uvicorn on 127.0.0.1:<free port>, own thread
        fake.base_url        # http://127.0.0.1:PORT/v1   (Anthropic, Gemini, Azure: the root URL)
        fake.root_url        # http://127.0.0.1:PORT
        fake.script([Fault.status(500), Fault.status(429, headers={"retry-after": "2"}), Fault.ok()])
        ...                  # requests past the script get a normal reply
        fake.requests        # [RecordedRequest(method, path, query, headers (lower-cased), body)], .json
        fake.last_usage      # FakeUsage of the last complete 2xx reply (None before one)

    A pytest fixture is three lines: ``with FakeOpenAI() as fake: yield fake``. Stopping joins the
    thread and ends hanging requests within ~50 ms.

Servers (each ``FakeX(*, api_key=None, text=DEFAULT_TEXT, usage=None, tool_input=None, chunk_delay=0.0,
linger=0.0)``, ``linger``: seconds a streamed body stays open after its last event, as keep-alive
upstreams do; the same names are attributes a test may change while the fake runs):
    FakeOpenAI       POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses (the
                     Responses API: see fakes_responses); GET /v1/models.
                     Key: ``Authorization: Bearer``. Streams honour stream_options.include_usage.
    FakeAzureOpenAI  /openai/deployments/{dep}/{op}?api-version=... and /openai/v1/{op} (responses too);
                     key: ``api-key``.
    FakeAnthropic    POST /v1/messages; key: ``x-api-key`` or Bearer; needs ``anthropic-version``.
                     ``fake.full_delta_usage = True``: message_delta carries the whole usage.
    FakeGemini       POST /v1beta/models/{model}:generateContent, :streamGenerateContent[?alt=sse];
                     key: ``x-goog-api-key`` or ``?key=``.
    ``api_key`` None accepts any key; set, a wrong key gets the provider's own auth error.
    Replies say ``text`` (split into one stream chunk per word), truncated to the request's max tokens
    with the provider's length stop reason. A request offering tools gets a call to the named tool or
    the first one (unless tool choice is none) with arguments ``tool_input`` (default {"location": "Paris"}).

Usage: ``FakeUsage(input_tokens, output_tokens, cached_tokens=0, cache_write_tokens=0)``, where
``input_tokens`` counts all prompt tokens (as ``providers.base.Usage`` and genai-prices). With
``usage=None`` a reply reports input = len(body) // 4 and output = the words sent. ``.as_usage()``
gives the sidecar's ``Usage``, ``.as_genai_usage()`` a ``genai_prices`` usage for ``calc_price``.

Faults (one per request, in order):
    Fault.ok(text=None, usage=None)          a normal reply, optionally with its own text / usage
    Fault.status(code, message=None, body=None, headers=None)
                                             an error in the provider's format (or ``body`` verbatim)
    Fault.html(code=200)                     an nginx-style HTML page
    Fault.invalid_json()                     200, application/json, truncated JSON
    Fault.hang(seconds)                      no byte for ``seconds``, then a normal reply
    Fault.reset()                            TCP reset before any byte
    Fault.stream_hang(after, seconds=30)     ``after`` stream chunks, silence, then an end without the
                                             terminal event ([DONE] / message_stop / finishReason)
    Fault.stream_truncate(after)             ``after`` chunks, then a clean end without the terminal event
    Fault.stream_reset(after)                ``after`` chunks, then a TCP reset
    Fault.stream_error(after, message)       ``after`` chunks, then the provider's in-stream error event
    Stream faults on an unstreamed request send half the JSON body instead of ``after`` chunks.
    Fault.endless()                          a stream that ignores the cap and never ends: content
                                             chunks until the client leaves (``fake.endless_frames_sent``)
    Fault.over_cap(text=None, usage=None)    a whole reply (or stream) that ignores the cap it was sent
    Fault.bad_usage(raw)                     a normal reply whose usage object is ``raw`` verbatim, where
                                             the provider puts it (OpenAI ``usage``, Anthropic message /
                                             message_start / message_delta ``usage``, Gemini ``usageMetadata``)

``closed_port()`` gives a loopback port nothing listens on (connecting is refused).
"""

from __future__ import annotations

from tests.support.fakes_anthropic import FakeAnthropic
from tests.support.fakes_gemini import FakeGemini
from tests.support.fakes_openai import FakeAzureOpenAI, FakeOpenAI
from tests.support.fakes_server import (
    DEFAULT_TEXT,
    FakeServer,
    FakeUsage,
    Fault,
    RecordedRequest,
    closed_port,
)

__all__ = [
    "DEFAULT_TEXT",
    "FakeAnthropic",
    "FakeAzureOpenAI",
    "FakeGemini",
    "FakeOpenAI",
    "FakeServer",
    "FakeUsage",
    "Fault",
    "RecordedRequest",
    "closed_port",
]
