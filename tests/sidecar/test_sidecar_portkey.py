"""Migration from Portkey: the real portkey-ai SDK pointed at the sidecar works unchanged; none of
its headers nor the app's credentials reach the provider, and its trace id and metadata become tags."""

from __future__ import annotations

import json

import pytest
from portkey_ai import Portkey

from tests.sidecar.conftest import OPENAI_KEY
from tests.support.fakes import DEFAULT_TEXT, FakeUsage
from tests.support.sidecar_harness import ledger_entries, wait_until

PORTKEY_KEY = "pk-app-secret-must-not-travel"
VIRTUAL_KEY = "vk-app-virtual-key"


def portkey(sidecar, **extra) -> Portkey:
    return sidecar.keep(
        Portkey(
            base_url=sidecar.base_url,
            api_key=PORTKEY_KEY,
            virtual_key=VIRTUAL_KEY,
            trace_id="t-123",
            metadata={"_user": "u1", "env": "prod"},
            provider="openai",
            **extra,
        )
    )


def assert_nothing_of_the_app_reached(fake) -> None:
    assert fake.requests
    for sent in fake.requests:
        leaked = [h for h in sent.headers if h.startswith(("x-portkey-", "x-sluicegate-", "x-tolvyn-"))]
        assert leaked == []
        assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
        dump = json.dumps(sent.headers) + sent.body.decode()
        for secret in (PORTKEY_KEY, VIRTUAL_KEY, "t-123"):
            assert secret not in dump


def log_lines(capfd) -> list[dict]:
    out = capfd.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_portkey_sdk_is_served_and_its_headers_never_reach_the_provider(gateway, openai_up, capfd) -> None:
    openai_up.usage = FakeUsage(100, 10)
    completion = portkey(gateway).chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
    )
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert_nothing_of_the_app_reached(openai_up)
    line = wait_until(lambda: [entry for entry in log_lines(capfd) if entry["op"] == "chat"])[-1]
    assert line["status"] == 200
    assert line["tags"]["portkey_trace_id"] == "t-123"
    assert line["tags"]["portkey_env"] == "prod"
    assert line["tags"]["portkey__user"] == "u1"
    entry = ledger_entries(gateway)[-1]
    assert entry["attribution"]["tags"]["portkey_trace_id"] == "t-123"
    assert entry["attribution"]["tags"]["portkey_env"] == "prod"


def test_portkey_sdk_streams_through_the_sidecar(gateway, openai_up) -> None:
    stream = portkey(gateway).chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == DEFAULT_TEXT
    assert openai_up.last_request.json["stream"] is True
    assert_nothing_of_the_app_reached(openai_up)


@pytest.mark.parametrize(
    "extra", [{"config": {"retry": {"attempts": 3}}}, {"custom_host": "http://evil.example"}]
)
def test_portkey_routing_options_do_not_steer_the_upstream(gateway, openai_up, extra) -> None:
    completion = portkey(gateway, **extra).chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
    )
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert len(openai_up.requests) == 1
    assert_nothing_of_the_app_reached(openai_up)
