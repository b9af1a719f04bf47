from __future__ import annotations

import json

import pytest

from sluicegate_sidecar.providers.anthropic import AnthropicAdapter
from sluicegate_sidecar.providers.azure import AzureAdapter
from sluicegate_sidecar.providers.base import Connection, UnsupportedOperation, Usage
from sluicegate_sidecar.providers.compatible import MOCK_BASE_URL, compatible_adapter, default_base_url
from sluicegate_sidecar.providers.gemini import GeminiAdapter
from sluicegate_sidecar.providers.mock import MockAdapter
from sluicegate_sidecar.providers.openai import OpenAIAdapter
from sluicegate_sidecar.providers.registry import adapter_for, build_adapters
from sluicegate_sidecar.providers.registry import default_base_url as registry_base_url

ALL_KINDS = [
    "openai",
    "azure-openai",
    "anthropic",
    "gemini",
    "mistral",
    "groq",
    "together",
    "openai-compatible",
    "mock",
]


def connection(kind: str, base_url: str = "", **extra) -> Connection:
    return Connection(name=f"{kind}-conn", provider=kind, base_url=base_url, api_key="key-123", **extra)


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        ("mistral", "https://api.mistral.ai/v1/chat/completions"),
        ("groq", "https://api.groq.com/openai/v1/chat/completions"),
        ("together", "https://api.together.xyz/v1/chat/completions"),
        ("mock", "http://mock.sluicegate.invalid/v1/chat/completions"),
    ],
)
def test_compatible_kinds_default_to_their_public_endpoint(kind, url):
    request = adapter_for(kind).build("chat", connection(kind), "m", {"messages": []}, stream=False)
    assert request.url == url
    assert request.headers["Authorization"] == "Bearer key-123"


def test_a_configured_base_url_wins_over_the_default():
    conn = connection("groq", "https://groq-proxy.internal/openai/v1")
    assert adapter_for("groq").build("chat", conn, "m", {}, stream=False).url == (
        "https://groq-proxy.internal/openai/v1/chat/completions"
    )


def test_openai_compatible_without_a_base_url_is_a_configuration_error():
    with pytest.raises(ValueError, match="no base URL"):
        adapter_for("openai-compatible").build("chat", connection("openai-compatible"), "m", {}, stream=False)


def test_the_mock_sends_no_authorization_when_it_has_no_key():
    conn = Connection(name="dev", provider="mock", base_url="")
    request = adapter_for("mock").build("chat", conn, "m", {"messages": []}, stream=True)
    assert request.url == MOCK_BASE_URL + "/chat/completions"
    assert "Authorization" not in request.headers
    assert json.loads(request.body)["stream_options"] == {"include_usage": True}


def test_mistral_gets_neither_stream_options_nor_max_completion_tokens():
    client = {"messages": [], "stream_options": {"include_usage": True}, "max_completion_tokens": 300}
    body = json.loads(
        adapter_for("mistral").build("chat", connection("mistral"), "m", client, stream=True).body
    )
    assert "stream_options" not in body and "max_completion_tokens" not in body
    assert body["max_tokens"] == 300


def test_mistral_usage_on_its_last_content_chunk_is_read_and_passed_on():
    last = (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"mistral-small-latest",'
        b'"choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":9,"total_tokens":11,"completion_tokens":2}}\n\n'
    )
    relay = adapter_for("mistral").relay("chat", "m", {"stream": True})
    assert relay.feed(last + b"data: [DONE]\n\n") == last + b"data: [DONE]\n\n"
    assert relay.usage == Usage(9, 2)


def test_groq_usage_in_x_groq_is_read():
    last = (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"llama",'
        b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
        b'"x_groq":{"id":"req_1","usage":{"prompt_tokens":40,"completion_tokens":5,"total_tokens":45}}}\n\n'
    )
    relay = adapter_for("groq").relay("chat", "m", {"stream": True})
    relay.feed(last + b"data: [DONE]\n\n")
    assert relay.usage == Usage(40, 5)


def test_every_provider_kind_has_an_adapter_of_the_right_family():
    adapters = build_adapters()
    assert sorted(adapters) == sorted(ALL_KINDS)
    assert isinstance(adapters["anthropic"], AnthropicAdapter)
    assert isinstance(adapters["gemini"], GeminiAdapter)
    assert isinstance(adapters["azure-openai"], AzureAdapter)
    for kind in ("openai", "mistral", "groq", "together", "openai-compatible"):
        assert isinstance(adapters[kind], OpenAIAdapter)
    assert isinstance(adapters["mock"], MockAdapter)  # OpenAI's format, and Anthropic's for Messages
    with pytest.raises(TypeError):
        adapters["openai"] = adapters["mock"]  # type: ignore[index]


def test_an_unknown_kind_has_no_adapter():
    with pytest.raises(KeyError, match="bedrock"):
        adapter_for("bedrock")
    with pytest.raises(ValueError):
        compatible_adapter("anthropic")


def test_default_base_urls_are_known_for_hosted_providers_only():
    assert registry_base_url("openai") == "https://api.openai.com/v1"
    assert registry_base_url("anthropic") == "https://api.anthropic.com"
    assert registry_base_url("gemini") == "https://generativelanguage.googleapis.com"
    assert registry_base_url("mistral") == default_base_url("mistral") == "https://api.mistral.ai/v1"
    assert registry_base_url("azure-openai") is None
    assert registry_base_url("openai-compatible") is None


# --- Azure ---------------------------------------------------------------------------------------

AZURE = Connection(
    name="azure-eu",
    provider="azure-openai",
    base_url="https://contoso-eu.openai.azure.com/",
    api_key="azkey",
    azure_api_version="2024-10-21",
    azure_deployments={"gpt-4o": "gpt4o-prod"},
)


@pytest.mark.parametrize(
    ("op", "tail"),
    [
        ("chat", "chat/completions"),
        ("completions", "completions"),
        ("embeddings", "embeddings"),
    ],
)
def test_azure_requests_go_to_the_mapped_deployment_with_an_api_key_header(op, tail):
    request = AzureAdapter().build(op, AZURE, "gpt-4o", {"model": "auto", "messages": []}, stream=False)
    assert (
        request.url
        == f"https://contoso-eu.openai.azure.com/openai/deployments/gpt4o-prod/{tail}?api-version=2024-10-21"
    )
    assert request.headers == {"Content-Type": "application/json", "api-key": "azkey"}
    assert "Authorization" not in request.headers


def test_azure_falls_back_to_the_model_name_as_deployment():
    request = AzureAdapter().build("chat", AZURE, "gpt-4o-mini", {"messages": []}, stream=True)
    assert "/openai/deployments/gpt-4o-mini/chat/completions?" in request.url
    assert json.loads(request.body)["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    "deployment", ["../admin", "a/b", "x?api-version=1", "x#frag", "a..b", "", "dep loy"]
)
def test_azure_refuses_deployment_names_that_could_change_the_url(deployment):
    with pytest.raises(UnsupportedOperation):
        AzureAdapter().build("chat", AZURE, deployment, {"messages": []}, stream=False)


def test_azure_refuses_a_malformed_api_version():
    conn = Connection(
        name="a", provider="azure-openai", base_url="https://x.openai.azure.com", azure_api_version="1&x=y"
    )
    with pytest.raises(ValueError, match="API version"):
        AzureAdapter().build("chat", conn, "gpt-4o", {}, stream=False)


def test_azure_streams_keep_the_prompt_filter_chunk_and_drop_unasked_usage():
    filter_chunk = (
        b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":'
        b'[{"prompt_index":0,"content_filter_results":{}}]}\n\n'
    )
    usage_chunk = (
        b'data: {"choices":[],"created":1,"id":"c","model":"gpt-4o","object":"chat.completion.chunk",'
        b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}\n\n'
    )
    relay = AzureAdapter().relay("chat", "gpt-4o", {"stream": True})
    out = relay.feed(filter_chunk + usage_chunk + b"data: [DONE]\n\n")
    assert out == filter_chunk + b"data: [DONE]\n\n"
    assert relay.usage == Usage(5, 1)
    assert relay.completed


def test_azure_auth_errors_are_generic():
    body = b'{"error":{"code":"401","message":"Access denied due to invalid subscription key."}}'
    assert AzureAdapter().parse_error(401, body).message == "upstream rejected the provider credentials"
