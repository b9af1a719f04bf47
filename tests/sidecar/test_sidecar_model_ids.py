"""Model ids that hold '/' (Together's and Groq's ``vendor/model`` ids), ``models.retrieve`` and explicit
nulls, through the real sidecar with the real openai SDK in front of fake OpenAI-compatible upstreams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from tests.sidecar.conftest import OPENAI_KEY
from tests.support.fakes import FakeOpenAI
from tests.support.sidecar_harness import SidecarThread, connection, render_dir, tier

LLAMA = "meta-llama/Llama-3.3-70B-Instruct"
GPT_OSS = "openai/gpt-oss-120b"  # Groq's id: its first segment is also a connection and a provider kind


@pytest.fixture
def groq_up() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="gsk-groq-secret") as fake:
        yield fake


@pytest.fixture
def slashed(tmp_path: Path, openai_up: FakeOpenAI, groq_up: FakeOpenAI) -> Iterator[SidecarThread]:
    config = render_dir(
        tmp_path / "config",
        [
            connection("openai", "openai", ["gpt-4o-mini"], base_url=openai_up.base_url, key=OPENAI_KEY),
            connection("together", "together", [LLAMA], base_url=openai_up.base_url, key=OPENAI_KEY),
            connection("groq", "groq", [GPT_OSS, LLAMA], base_url=groq_up.base_url, key="gsk-groq-secret"),
            tier("open", 5, [("together", LLAMA), ("groq", GPT_OSS)], strategy="ordered"),
        ],
    )
    with SidecarThread(config, tmp_path / "ledger") as sidecar:
        yield sidecar


@pytest.fixture
def sdk(slashed: SidecarThread) -> Iterator[OpenAI]:
    with OpenAI(base_url=slashed.base_url, api_key="unused", max_retries=0) as client:
        yield client


def ask(sdk: OpenAI, model: str) -> httpx.Headers:
    raw = sdk.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    return raw.headers


def test_a_pinned_slash_id_reaches_its_connection_with_the_id_unchanged(openai_up, sdk) -> None:
    assert ask(sdk, f"together/{LLAMA}")["x-sluicegate-routed-model"] == f"together/{LLAMA}"
    assert openai_up.last_request.json["model"] == LLAMA


def test_a_slash_id_offered_once_is_a_bare_name(groq_up, sdk) -> None:
    assert ask(sdk, GPT_OSS)["x-sluicegate-routed-model"] == f"groq/{GPT_OSS}"
    assert groq_up.last_request.json["model"] == GPT_OSS


def test_a_first_segment_naming_a_connection_that_lacks_the_rest_falls_to_the_whole_id(sdk) -> None:
    # "openai" is a connection and a provider kind, but neither offers "gpt-oss-120b"
    assert ask(sdk, "openai/gpt-4o-mini")["x-sluicegate-routed-model"] == "openai/gpt-4o-mini"
    assert ask(sdk, "groq/" + GPT_OSS)["x-sluicegate-routed-model"] == f"groq/{GPT_OSS}"


def test_a_slash_id_offered_twice_asks_for_the_connection(sdk) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        ask(sdk, LLAMA)
    assert f"<connection>/{LLAMA}" in str(caught.value)


def test_a_tier_of_slash_ids_routes(sdk) -> None:
    assert ask(sdk, "tier:open")["x-sluicegate-routed-model"] == f"together/{LLAMA}"


def test_models_retrieve_finds_slash_ids_whether_the_slash_is_encoded_or_not(slashed, sdk) -> None:
    listed = {m.id for m in sdk.models.list()}
    assert {f"together/{LLAMA}", f"groq/{GPT_OSS}", GPT_OSS, "tier:open"} <= listed
    for model_id in (f"together/{LLAMA}", GPT_OSS, "tier:open", "gpt-4o-mini"):
        model = sdk.models.retrieve(model_id)  # the SDK sends "/" as %2F
        assert model.id == model_id and model.object == "model"
    literal = httpx.get(f"{slashed.base_url}/models/together/{LLAMA}")
    assert literal.status_code == 200 and literal.json()["id"] == f"together/{LLAMA}"


def test_models_retrieve_of_an_unknown_or_malformed_id_is_a_404(slashed, sdk) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("no-such-model")
    for tail in ("a%2F..%2Fb", "x%00y", "a%252Fb", "together//x"):
        response = httpx.get(f"{slashed.base_url}/models/{tail}")
        assert response.status_code == 404, tail
        assert response.json()["error"]["code"] == "model_not_found"


def test_explicit_nulls_for_optional_fields_are_accepted_as_not_given(openai_up, sdk) -> None:
    completion = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"n": None, "stream": None, "temperature": None, "max_tokens": None, "top_p": None},
    )
    assert completion.choices[0].message.content
    sent = openai_up.last_request.json
    assert "n" not in sent and sent.get("stream") in (None, False) and "temperature" not in sent
