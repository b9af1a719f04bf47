"""The fake providers speak the real wire formats (checked with the real SDKs)."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest
from genai_prices import extract_usage

from tests.support.fakes import (
    DEFAULT_TEXT,
    FakeAzureOpenAI,
    FakeUsage,
    Fault,
)
from tests.support.wirecheck import (
    ANTHROPIC_HEADERS,
    CACHED,
    CHAT,
    GEMINI,
    GEMINI_PATH,
    MESSAGES,
    WEATHER,
    anthropic_client,
    anthropic_events,
    openai_client,
    post,
    sse_data,
)

# -- OpenAI -----------------------------------------------------------------------------------------


def test_openai_chat_completion_parses_with_the_sdk_and_reports_cached_tokens(fake_openai):
    fake_openai.usage = CACHED
    with openai_client(fake_openai) as client:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=CHAT["messages"])
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 1000 and completion.usage.completion_tokens == 40
    assert completion.usage.prompt_tokens_details.cached_tokens == 300
    assert fake_openai.last_usage == CACHED
    wire = post(fake_openai, "/v1/chat/completions", CHAT, {"authorization": "Bearer sk-test"}).json()
    extracted = extract_usage(wire, provider_id="openai", api_flavor="chat").usage
    expected = CACHED.as_genai_usage()
    assert (extracted.input_tokens, extracted.cache_read_tokens, extracted.output_tokens) == (
        expected.input_tokens,
        expected.cache_read_tokens,
        expected.output_tokens,
    )


def test_openai_stream_with_include_usage_ends_with_a_usage_chunk_then_done(fake_openai):
    fake_openai.usage = FakeUsage(30, 7)
    with openai_client(fake_openai) as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=CHAT["messages"],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == DEFAULT_TEXT
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 37
    assert all(c.usage is None for c in chunks[:-1])
    raw = post(
        fake_openai, "/v1/chat/completions", CHAT | {"stream": True}, {"authorization": "Bearer sk-test"}
    )
    frames = sse_data(raw.content)
    assert frames[-1] == b"[DONE]" and all(b'"usage"' not in f for f in frames)
    assert json.loads(frames[-2])["choices"][0]["finish_reason"] == "stop"


def test_openai_fake_records_method_path_lower_cased_headers_and_body(fake_openai):
    with openai_client(fake_openai) as client:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=CHAT["messages"], extra_headers={"X-Portkey-Trace-Id": "t1"}
        )
    request = fake_openai.last_request
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["x-portkey-trace-id"] == "t1"
    assert request.json["messages"] == CHAT["messages"]


def test_openai_wrong_key_gets_invalid_api_key(fake_openai):
    client = fake_openai.keep(openai.OpenAI(base_url=fake_openai.base_url, api_key="wrong", max_retries=0))
    with client, pytest.raises(openai.AuthenticationError) as raised:
        client.models.list()
    assert raised.value.code == "invalid_api_key"


def test_openai_max_tokens_truncates_with_finish_reason_length(fake_openai):
    with openai_client(fake_openai) as client:
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=CHAT["messages"], max_tokens=3
        )
    assert completion.choices[0].message.content == "Hello from the"
    assert completion.choices[0].finish_reason == "length" and completion.usage.completion_tokens == 3


def test_openai_tools_get_a_tool_call_streamed_or_not(fake_openai):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    with openai_client(fake_openai) as client:
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=CHAT["messages"], tools=tools
        )
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=CHAT["messages"], tools=tools, stream=True
            )
        )
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "location": "Paris"
    }
    deltas = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments for d in deltas)) == {"location": "Paris"}


def test_openai_completions_embeddings_and_models_parse_with_the_sdk(fake_openai):
    with openai_client(fake_openai) as client:
        completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
        embeddings = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])  # base64
        models = [m.id for m in client.models.list()]
    assert completion.choices[0].text == DEFAULT_TEXT
    assert [len(d.embedding) for d in embeddings.data] == [8, 8] and embeddings.data[1].embedding[
        0
    ] == pytest.approx(0.2)
    assert "gpt-4o-mini" in models


# -- Azure OpenAI -----------------------------------------------------------------------------------


def test_azure_sdk_calls_the_deployment_url_with_api_version_and_api_key():
    with FakeAzureOpenAI(api_key="az-key") as fake:
        with openai.AzureOpenAI(
            azure_endpoint=fake.root_url, api_version="2024-10-21", api_key="az-key", max_retries=0
        ) as client:
            completion = client.chat.completions.create(model="prod-4o", messages=CHAT["messages"])
            chunks = list(
                client.chat.completions.create(
                    model="prod-4o",
                    messages=CHAT["messages"],
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
        request = fake.requests[0]
    assert request.path == "/openai/deployments/prod-4o/chat/completions"
    assert request.query == {"api-version": "2024-10-21"} and request.headers["api-key"] == "az-key"
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert chunks[0].choices == [] and chunks[0].usage is None  # Azure's prompt-filter chunk
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == DEFAULT_TEXT
    assert chunks[-1].usage is not None


def test_azure_refuses_a_missing_api_version_and_a_wrong_key():
    with FakeAzureOpenAI(api_key="az-key") as fake:
        path = "/openai/deployments/prod-4o/chat/completions"
        missing = post(fake, path, CHAT, {"api-key": "az-key"})
        wrong = httpx.post(
            fake.root_url + path, params={"api-version": "2024-10-21"}, json=CHAT, headers={"api-key": "x"}
        )
        v1 = post(fake, "/openai/v1/chat/completions", CHAT, {"api-key": "az-key"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "404"
    assert wrong.status_code == 401 and set(wrong.json()["error"]) == {"code", "message"}
    assert v1.status_code == 200


# -- Anthropic --------------------------------------------------------------------------------------


def test_anthropic_create_reports_cache_reads_and_writes_apart_from_input(fake_anthropic):
    fake_anthropic.usage = CACHED
    with anthropic_client(fake_anthropic) as client:
        message = client.messages.create(**MESSAGES)
    assert message.content[0].text == DEFAULT_TEXT and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (600, 300)
    assert (message.usage.cache_creation_input_tokens, message.usage.output_tokens) == (100, 40)
    wire = post(fake_anthropic, "/v1/messages", MESSAGES, ANTHROPIC_HEADERS).json()
    extracted = extract_usage(wire, provider_id="anthropic").usage
    assert (extracted.input_tokens, extracted.cache_read_tokens, extracted.cache_write_tokens) == (
        1000,
        300,
        100,
    )


@pytest.mark.parametrize("full_delta_usage", [False, True])
def test_anthropic_stream_has_the_full_event_sequence_and_final_usage(fake_anthropic, full_delta_usage):
    fake_anthropic.usage = CACHED
    fake_anthropic.full_delta_usage = full_delta_usage
    with anthropic_client(fake_anthropic) as client, client.messages.stream(**MESSAGES) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == DEFAULT_TEXT and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cache_read_input_tokens) == (
        600,
        40,
        300,
    )
    raw = post(fake_anthropic, "/v1/messages", MESSAGES | {"stream": True}, ANTHROPIC_HEADERS)
    names = [name for name, data in anthropic_events(raw.content)]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[3:-3] == ["content_block_delta"] * len(DEFAULT_TEXT.split())
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in anthropic_events(raw.content))


def test_anthropic_tool_use_streams_input_json_deltas(fake_anthropic):
    fake_anthropic.tool_input = {"location": "Oslo", "days": 3}
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}]
    client = anthropic_client(fake_anthropic)
    with client, client.messages.stream(**MESSAGES, tools=tools) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].name == "get_weather"
    assert final.content[0].input == {"location": "Oslo", "days": 3}


def test_anthropic_errors_use_the_error_envelope(fake_anthropic):
    fake_anthropic.script([Fault.status(529, message="Overloaded")])
    with anthropic_client(fake_anthropic) as client, pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(**MESSAGES)
    assert raised.value.status_code == 529
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    no_version = post(fake_anthropic, "/v1/messages", MESSAGES, {"x-api-key": "ak"})
    wrong_key = post(fake_anthropic, "/v1/messages", MESSAGES, ANTHROPIC_HEADERS | {"x-api-key": "bad"})
    assert no_version.status_code == 400 and no_version.json()["error"]["type"] == "invalid_request_error"
    assert wrong_key.status_code == 401 and wrong_key.json()["error"]["type"] == "authentication_error"


def test_anthropic_max_tokens_stops_with_max_tokens(fake_anthropic):
    with anthropic_client(fake_anthropic) as client:
        message = client.messages.create(**MESSAGES | {"max_tokens": 2})
    assert message.content[0].text == "Hello from" and message.stop_reason == "max_tokens"


# -- Gemini -----------------------------------------------------------------------------------------


def test_gemini_generate_content_has_candidates_and_usage_metadata(fake_gemini):
    fake_gemini.usage = CACHED
    reply = post(fake_gemini, GEMINI_PATH + "generateContent", GEMINI, {"x-goog-api-key": "gk"}).json()
    candidate = reply["candidates"][0]
    assert candidate["content"] == {"parts": [{"text": DEFAULT_TEXT}], "role": "model"}
    assert candidate["finishReason"] == "STOP" and reply["modelVersion"] == "gemini-2.5-flash"
    usage = reply["usageMetadata"]
    assert (usage["promptTokenCount"], usage["candidatesTokenCount"], usage["cachedContentTokenCount"]) == (
        1000,
        40,
        300,
    )
    assert usage["totalTokenCount"] == 1040
    extracted = extract_usage(reply, provider_id="google").usage
    assert (extracted.input_tokens, extracted.cache_read_tokens, extracted.output_tokens) == (1000, 300, 40)
    fake_gemini.usage = FakeUsage(10, 5)
    plain = post(fake_gemini, GEMINI_PATH + "generateContent", GEMINI, {"x-goog-api-key": "gk"}).json()
    assert "cachedContentTokenCount" not in plain["usageMetadata"]


def test_gemini_sse_stream_frames_end_with_finish_reason_and_full_usage(fake_gemini):
    fake_gemini.usage = FakeUsage(12, 9)
    response = httpx.post(
        fake_gemini.root_url + GEMINI_PATH + "streamGenerateContent",
        params={"alt": "sse", "key": "gk"},
        json=GEMINI,
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content.endswith(b"\r\n\r\n")
    frames = [json.loads(f) for f in sse_data(response.content, b"\r\n\r\n")]
    assert "".join(f["candidates"][0]["content"]["parts"][0]["text"] for f in frames) == DEFAULT_TEXT
    assert [("finishReason" in f["candidates"][0]) for f in frames] == [False] * (len(frames) - 1) + [True]
    assert frames[-1]["usageMetadata"]["candidatesTokenCount"] == 9
    assert frames[-1]["usageMetadata"]["totalTokenCount"] == 21


def test_gemini_stream_without_alt_sse_is_one_json_array(fake_gemini):
    response = post(fake_gemini, GEMINI_PATH + "streamGenerateContent", GEMINI, {"x-goog-api-key": "gk"})
    items = response.json()
    assert isinstance(items, list) and items[-1]["candidates"][0]["finishReason"] == "STOP"


def test_gemini_key_errors_follow_google(fake_gemini):
    missing = post(fake_gemini, GEMINI_PATH + "generateContent", GEMINI)
    wrong = post(fake_gemini, GEMINI_PATH + "generateContent", GEMINI, {"x-goog-api-key": "bad"})
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    assert wrong.status_code == 400 and wrong.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert set(wrong.json()["error"]) == {"code", "message", "status", "details"}


def test_gemini_function_calls_and_max_output_tokens(fake_gemini):
    tools = {"tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": WEATHER}]}]}
    headers = {"x-goog-api-key": "gk"}
    called = post(fake_gemini, GEMINI_PATH + "generateContent", GEMINI | tools, headers).json()
    assert called["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}}
    ]
    short = post(
        fake_gemini,
        GEMINI_PATH + "generateContent",
        GEMINI | {"generationConfig": {"maxOutputTokens": 2}},
        headers,
    )
    assert short.json()["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert short.json()["candidates"][0]["content"]["parts"][0]["text"] == "Hello from"


# -- OpenAI Responses API ----------------------------------------------------------------------------

RESPONSE_TOOL = {"type": "function", "name": "get_weather", "parameters": WEATHER}


def test_openai_responses_parse_with_the_sdk_and_report_cached_and_reasoning_tokens(fake_openai):
    fake_openai.usage = CACHED
    with openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0) as client:
        response = client.responses.create(model="o4-mini", input="Hi", reasoning={"effort": "low"})
        with client.responses.stream(model="gpt-4o-mini", input="Hi") as stream:
            events = [event.type for event in stream]
            final = stream.get_final_response()
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output_text == DEFAULT_TEXT and response.status == "completed"
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.input_tokens_details.cached_tokens) == (
        1000,
        40,
        300,
    )
    assert usage.output_tokens_details.reasoning_tokens == 4
    assert events[:2] == ["response.created", "response.in_progress"] and events[-1] == "response.completed"
    assert final.output_text == DEFAULT_TEXT and final.usage.output_tokens == 40


def test_openai_responses_tool_calls_stream_arguments_and_a_tool_output_gets_text(fake_openai):
    with openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0) as client:
        with client.responses.stream(model="gpt-4o-mini", input="Weather?", tools=[RESPONSE_TOOL]) as stream:
            events = [event.type for event in stream]
            [call] = stream.get_final_response().output
        after = client.responses.create(
            model="gpt-4o-mini",
            input=[
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                },
                {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"},
            ],
            tools=[RESPONSE_TOOL],
        )
    assert call.type == "function_call" and json.loads(call.arguments) == {"location": "Paris"}
    assert "response.function_call_arguments.done" in events
    assert after.output_text == DEFAULT_TEXT


def test_openai_responses_max_output_tokens_is_an_incomplete_response_and_faults_keep_the_format(fake_openai):
    fake_openai.text = " ".join(["word"] * 30)
    with openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0) as client:
        short = client.responses.create(model="gpt-4o-mini", input="Hi", max_output_tokens=16)
        with pytest.raises(openai.BadRequestError, match="integer below minimum value") as below:
            client.responses.create(model="gpt-4o-mini", input="Hi", max_output_tokens=15)  # as OpenAI
        assert below.value.code == "integer_below_min_value" and below.value.param == "max_output_tokens"
        fake_openai.script([Fault.status(429)])
        with pytest.raises(openai.RateLimitError):
            client.responses.create(model="gpt-4o-mini", input="Hi")
    assert short.status == "incomplete" and short.incomplete_details.reason == "max_output_tokens"
    fake_openai.script([Fault.stream_error(after=3, message="Overloaded")])
    reply = post(fake_openai, "/v1/responses", {"model": "m", "input": "Hi", "stream": True},
                 {"authorization": "Bearer sk-test"})  # fmt: skip
    last = reply.text.strip().split("\n\n")[-1]
    assert last.startswith("event: error\n")
    assert json.loads(last.split("data: ", 1)[1]) | {"sequence_number": 0} == {
        "type": "error", "code": "server_error", "message": "Overloaded", "param": None, "sequence_number": 0,
    }  # fmt: skip


def test_azure_serves_the_responses_api_on_its_v1_surface():
    with FakeAzureOpenAI(api_key="az-key") as fake:
        with openai.OpenAI(base_url=fake.root_url + "/openai/v1", api_key="az-key", max_retries=0,
                           default_headers={"api-key": "az-key"}) as client:  # fmt: skip
            response = client.responses.create(model="prod-4o", input="Hi")
        request = fake.requests[0]
    assert request.path == "/openai/v1/responses" and response.output_text == DEFAULT_TEXT
