"""Drop-in compatibility: Portkey, TOLVYN and HiWay clients against the sidecar with only the base URL
changed. A fake OpenAI upstream stands behind a real sidecar (no network)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from openai import APIStatusError, OpenAI
from portkey_ai import Portkey

from tests.support.fakes import DEFAULT_TEXT, FakeAnthropic, FakeOpenAI
from tests.support.sidecar_harness import SidecarThread, budget, connection, render_dir, tier

OPENAI_KEY = "sk-upstream-openai-dropin-0001"
ANTHROPIC_KEY = "sk-ant-upstream-dropin-0002"
CHAT = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=OPENAI_KEY) as fake:
        yield fake


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=ANTHROPIC_KEY) as fake:
        yield fake


def resources(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, *extra) -> list:
    return [
        connection(
            "openai", "openai", ["gpt-4o-mini", "gpt-4o"], base_url=fake_openai.base_url, key=OPENAI_KEY
        ),
        connection(
            "anthropic",
            "anthropic",
            ["claude-haiku-4-5"],
            base_url=fake_anthropic.base_url,
            key=ANTHROPIC_KEY,
        ),
        tier("light", 0, [("openai", "gpt-4o-mini")], auto={"enabled": True, "maxPromptTokens": 4000}),
        tier("heavy", 20, [("anthropic", "claude-haiku-4-5")], auto={"enabled": True}),
        *extra,
    ]


@pytest.fixture
def sidecar(tmp_path: Path, fake_openai, fake_anthropic) -> Iterator[SidecarThread]:
    config = render_dir(tmp_path / "config", resources(fake_openai, fake_anthropic))
    with SidecarThread(config, tmp_path / "ledger") as sc:
        yield sc


def ledger(sc: SidecarThread) -> list[dict]:
    sc.run_sync(sc.gateway.ledger.flush())
    lines: list[dict] = []
    for path in sorted(sc.ledger_dir.glob("ledger-*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line]
    return lines


@contextmanager
def portkey_client(base_url: str | None) -> Iterator[Portkey]:
    """A client as a Portkey user writes it: their API key, a virtual key, a config, tracing."""
    client = Portkey(
        base_url=base_url,
        api_key="pk-live-portkey-key",
        virtual_key="openai-prod-4a1f",
        config={"strategy": {"mode": "fallback"}, "targets": [{"virtual_key": "openai-prod-4a1f"}]},
        trace_id="checkout-42",
        metadata={"_user": "u-7", "env": "prod"},
    )
    try:
        yield client
    finally:
        client.close()
        client.openai_client.close()  # the SDK keeps a second HTTP client of its own


def test_portkey_sdk_chats_and_streams_with_only_its_base_url_changed(sidecar, fake_openai) -> None:
    with portkey_client(sidecar.base_url) as client:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
        assert reply.choices[0].message.content == DEFAULT_TEXT
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == DEFAULT_TEXT
    for sent in fake_openai.requests:
        assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"  # the connection's key
        assert not [h for h in sent.headers if h.startswith("x-portkey-")]
    tags = [entry["attribution"]["tags"] for entry in ledger(sidecar)]
    assert tags == [{"portkey_trace_id": "checkout-42", "portkey__user": "u-7", "portkey_env": "prod"}] * 2


def test_portkey_sdk_needs_no_code_change_when_PORTKEY_PROXY_points_at_the_sidecar(
    sidecar, monkeypatch
) -> None:
    monkeypatch.setenv("PORTKEY_PROXY", sidecar.base_url)
    with portkey_client(None) as client:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    assert reply.choices[0].message.content == DEFAULT_TEXT


def test_portkey_routing_headers_are_ignored_with_a_logged_note(sidecar, fake_openai, caplog) -> None:
    with (
        caplog.at_level(logging.INFO, logger="sluicegate.sidecar"),
        portkey_client(sidecar.base_url) as client,
    ):
        client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    notes = " ".join(r.getMessage() for r in caplog.records)
    assert "x-portkey-config is ignored" in notes
    assert "x-portkey-virtual-key is ignored" in notes
    assert "openai-prod-4a1f" not in notes  # the note names the header, not its value


@pytest.mark.parametrize("suffix", ["/v1/proxy/openai", "/v1/proxy/openai/v1"])
def test_tolvyn_style_base_url_pins_the_provider_for_the_plain_openai_sdk(
    sidecar, fake_openai, suffix
) -> None:
    with OpenAI(base_url=sidecar.root_url + suffix, api_key="tlv_live_placeholder", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=CHAT,
            extra_headers={"X-Tolvyn-Team": "payments", "X-Tolvyn-Feature": "cart"},
        )
    assert raw.parse().choices[0].message.content == DEFAULT_TEXT
    assert raw.headers["x-sluicegate-routed-model"] == "openai/gpt-4o-mini"
    assert fake_openai.requests[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert not [h for h in fake_openai.requests[-1].headers if h.startswith("x-tolvyn-")]
    attribution = ledger(sidecar)[-1]["attribution"]
    assert (attribution["team"], attribution["feature"]) == ("payments", "cart")


def test_tolvyn_style_base_url_refuses_a_model_the_pinned_provider_does_not_serve(sidecar) -> None:
    client = OpenAI(base_url=sidecar.root_url + "/v1/proxy/openai", api_key="x", max_retries=0)
    with client, pytest.raises(APIStatusError) as failure:
        client.chat.completions.create(model="claude-haiku-4-5", messages=CHAT)
    assert failure.value.status_code in (400, 404)


def test_tolvyn_google_base_url_is_accepted(sidecar) -> None:
    response = httpx.post(
        sidecar.root_url + "/v1/proxy/google/chat/completions",
        json={"model": "gemini-2.0-flash", "messages": CHAT},
    )
    assert response.status_code != 404 or response.json()["error"]["code"] != "unknown_url"


def test_hiway_auto_picks_a_tier_and_the_routed_model_header_names_provider_and_model(sidecar) -> None:
    with OpenAI(base_url=sidecar.base_url, api_key="hw_live_placeholder", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=CHAT)
        heavy = client.chat.completions.with_raw_response.create(model="heavy", messages=CHAT)  # a tier
        pinned = client.chat.completions.with_raw_response.create(model="openai/gpt-4o", messages=CHAT)
    assert raw.headers["x-sluicegate-tier"] == "light"
    assert raw.headers["x-sluicegate-routed-model"] == "openai/gpt-4o-mini"
    assert heavy.headers["x-sluicegate-tier"] == "heavy"
    assert heavy.headers["x-sluicegate-routed-model"] == "anthropic/claude-haiku-4-5"
    assert pinned.headers["x-sluicegate-routed-model"] == "openai/gpt-4o"


def test_hiway_block_verdict_is_the_same_402_budget_exceeded(
    tmp_path: Path, fake_openai, fake_anthropic
) -> None:
    config = render_dir(
        tmp_path / "config", resources(fake_openai, fake_anthropic, budget("monthly", 0.000001, "month"))
    )
    with SidecarThread(config, tmp_path / "ledger") as sc:
        response = httpx.post(sc.base_url + "/chat/completions", json={"model": "auto", "messages": CHAT})
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "budget_exceeded"
