"""fault 30 (issue 13 items 3 and 4): upstreams that report usage no correct provider reports, or
stream past the cap they were sent, through the real sidecar in front of fakes of each provider.

Never a 500, never a reservation left open, never a negative or unbounded charge: a stream past its
reserved output is cut with the client's stream error event and charged at most its reservation;
bad usage is charged a bounded figure, recorded with basis ``anomalous`` (reported figures kept) and
counted in ``sluicegate_usage_anomalies_total``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluicegate_contract.schema import ModelPrice, Rates
from sluicegate_sidecar.pricing import worst_case_micro_usd
from sluicegate_sidecar.routing.bounds import request_bound
from tests.sidecar.conftest import ANTHROPIC_KEY, CLAUDE, GEMINI, GEMINI_KEY, OPENAI_KEY
from tests.support.fakes import FakeServer, FakeUsage, Fault
from tests.support.sidecar_harness import (
    SidecarThread,
    budget,
    connection,
    ledger_entries,
    metric_value,
    priced,
    render_dir,
    wait_until,
)

CAP_MICRO_USD = 2_000  # $0.002
CAP_TOKENS = 16
IN_RATE, OUT_RATE = 1.0, 4.0  # USD per million tokens, every model here
PRICE = ModelPrice(source="override", base=Rates(input_per_mtok=1_000_000, output_per_mtok=4_000_000))
MESSAGES = [{"role": "user", "content": "Say something."}]
ROUTES = {  # route id: (provider kind, model the client names, path)
    "openai-chat": ("openai", "openai/gpt-4o-mini", "/chat/completions"),
    "openai-completions": ("openai", "openai/gpt-4o-mini", "/completions"),
    "anthropic-chat": ("anthropic", f"anthropic/{CLAUDE}", "/chat/completions"),
    "anthropic-messages": ("anthropic", f"anthropic/{CLAUDE}", "/messages"),
    "gemini-chat": ("gemini", f"gemini/{GEMINI}", "/chat/completions"),
}


@pytest.fixture
def sidecar(tmp_path: Path, openai_up, anthropic_up, gemini_up) -> Iterator[SidecarThread]:
    config = render_dir(
        tmp_path / "cfg",
        [
            connection("openai", "openai", [priced("gpt-4o-mini", IN_RATE, OUT_RATE)], base_url=openai_up.base_url, key=OPENAI_KEY),
            connection("anthropic", "anthropic", [priced(CLAUDE, IN_RATE, OUT_RATE)], base_url=anthropic_up.root_url, key=ANTHROPIC_KEY),
            connection("gemini", "gemini", [priced(GEMINI, IN_RATE, OUT_RATE)], base_url=gemini_up.root_url, key=GEMINI_KEY),
            budget("small-cap", CAP_MICRO_USD / 1_000_000, action="BLOCK"),
        ],
    )  # fmt: skip
    with SidecarThread(config, tmp_path / "ledger", access_log=False) as sc:
        yield sc


def fake_for(kind: str, openai_up: FakeServer, anthropic_up: FakeServer, gemini_up: FakeServer) -> FakeServer:
    return {"openai": openai_up, "anthropic": anthropic_up, "gemini": gemini_up}[kind]


def request_body(route: str, stream: bool) -> dict[str, Any]:
    _, model, path = ROUTES[route]
    body: dict[str, Any] = {"model": model, "max_tokens": CAP_TOKENS, "stream": stream}
    if path == "/completions":
        body["prompt"] = "Say something."
    else:
        body["messages"] = MESSAGES
    return body


def reservation_of(route: str) -> int:
    """The most one request of ``route`` may be charged: its worst case (input bound, every output)
    at the cap it sends."""
    op = "completions" if ROUTES[route][2] == "/completions" else "chat"
    bound = request_bound(op, request_body(route, False), 1, None)  # type: ignore[arg-type]
    return worst_case_micro_usd(PRICE, bound.text_tokens, CAP_TOKENS, bound.outputs)


def post(sidecar: SidecarThread, route: str, stream: bool) -> tuple[httpx.Response, str]:
    """POST ``route`` and return the response and its whole body as text."""
    path = ROUTES[route][2]
    headers = {"anthropic-version": "2023-06-01"} if path == "/messages" else {}
    url = f"{sidecar.base_url}{path}"
    with httpx.stream("POST", url, json=request_body(route, stream), headers=headers, timeout=15) as response:
        text = response.read().decode()
    return response, text


def sse_blocks(text: str) -> list[tuple[str, str]]:
    """(event name, data) of each SSE event."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name = "".join(line[7:] for line in block.splitlines() if line.startswith("event: "))
        data = "".join(line[6:] for line in block.splitlines() if line.startswith("data: "))
        if data:
            events.append((name, data))
    return events


def entry_for(sidecar: SidecarThread, response: httpx.Response) -> dict[str, Any]:
    request_id = response.headers["x-request-id"]
    return wait_until(
        lambda: next((e for e in ledger_entries(sidecar) if e["requestId"] == request_id), None)
    )


def assert_no_reservation_left_and_the_rest_can_be_spent(
    sidecar: SidecarThread, openai_up: FakeServer
) -> None:
    """No reservation is open, and a normal request afterwards is served with the budget's remaining
    room equal to the cap less what the ledger settled (nothing held back by a leaked reservation)."""
    assert sidecar.gateway is not None
    wait_until(lambda: sidecar.gateway.budgets.outstanding == 0)  # type: ignore[union-attr]
    openai_up.script([Fault.ok(usage=FakeUsage(5, 3))])
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "max_tokens": CAP_TOKENS}
    after = httpx.post(f"{sidecar.base_url}/chat/completions", json=body, timeout=10)
    assert after.status_code == 200
    settled = sum(e["costMicroUSD"] for e in ledger_entries(sidecar))
    assert 0 <= settled <= CAP_MICRO_USD
    remaining = round(float(after.headers["x-sluicegate-budget-remaining-usd"]) * 1_000_000)
    assert remaining == CAP_MICRO_USD - settled


# -- item 3: a stream that never ends, or ignores its cap, is cut --------------------------------


@pytest.mark.parametrize("route", list(ROUTES))
def test_faults_30_an_endless_stream_is_cut_with_the_stream_error_event_and_charged_at_most_its_reservation(
    sidecar, openai_up, anthropic_up, gemini_up, route
) -> None:
    fake = fake_for(ROUTES[route][0], openai_up, anthropic_up, gemini_up)
    fake.script([Fault.endless()])
    response, text = post(sidecar, route, stream=True)
    assert response.status_code == 200
    events = sse_blocks(text)
    name, data = events[-1]
    if route == "anthropic-messages":  # Anthropic-native clients get Anthropic's error event
        assert name == "error"
        error = json.loads(data)
        assert error["type"] == "error" and error["error"]["type"] == "api_error"
        assert "reserved" in error["error"]["message"]
        assert all(n != "message_stop" for n, _ in events)
    else:  # OpenAI clients get the OpenAI envelope, and never [DONE]
        assert json.loads(data)["error"]["code"] == "upstream_output_over_cap"
        assert all(d != "[DONE]" for _, d in events)
    wait_until(lambda: fake.endless_frames_sent > 0)  # the fake saw its client go: the stream ended
    assert fake.endless_frames_sent < 100_000  # (what it wrote into socket buffers before it noticed)
    assert len(text) < 20_000  # the client got a few dozen chunks, then the error event
    entry = entry_for(sidecar, response)
    assert entry["status"] == "upstream_output_over_cap"
    assert entry["costBasis"] == "anomalous" and entry["anomaly"] == "output_over_cap"
    assert 0 < entry["costMicroUSD"] <= reservation_of(route)
    assert entry["reportedUsage"]["output"] > CAP_TOKENS  # what it streamed is kept beside the charge
    assert metric_value(sidecar, "sluicegate_usage_anomalies_total", reason="output_over_cap") == 1
    assert_no_reservation_left_and_the_rest_can_be_spent(sidecar, openai_up)


def test_faults_30_a_burst_of_endless_streams_settles_within_the_cap(sidecar, openai_up) -> None:
    """Charged 81x its reservation before: now each endless stream costs at most what it reserved,
    and the burst stops at the cap with 402s."""
    # Every other request is a correct one, so that the breaker (an over-cap stream counts as an
    # upstream failure) does not stop the burst before the cap does.
    openai_up.script([Fault.endless(), Fault.ok(usage=FakeUsage(10, CAP_TOKENS))] * 40)
    statuses = []
    for _ in range(80):
        response, _ = post(sidecar, "openai-chat", stream=True)
        statuses.append(response.status_code)
    assert set(statuses) <= {200, 402} and 402 in statuses
    entries = ledger_entries(sidecar)
    assert all(e["costMicroUSD"] <= reservation_of("openai-chat") for e in entries)
    settled = sum(e["costMicroUSD"] for e in entries)
    assert 0.9 * CAP_MICRO_USD <= settled <= CAP_MICRO_USD


@pytest.mark.parametrize("route", ["openai-chat", "anthropic-messages", "gemini-chat"])
def test_faults_30_a_stream_that_ignores_its_cap_is_cut_before_its_end(
    sidecar, openai_up, anthropic_up, gemini_up, route
) -> None:
    fake = fake_for(ROUTES[route][0], openai_up, anthropic_up, gemini_up)
    fake.script([Fault.over_cap(text=" ".join(f"word{i}" for i in range(200)))])
    response, text = post(sidecar, route, stream=True)
    assert response.status_code == 200
    assert "word199" not in text  # what passed the cap was not relayed
    entry = entry_for(sidecar, response)
    assert entry["costBasis"] == "anomalous" and entry["status"] == "upstream_output_over_cap"
    assert entry["costMicroUSD"] <= reservation_of(route)


# -- item 4: usage no correct provider reports ---------------------------------------------------

# Shapes by provider: (shape id, raw usage object, anomaly reason). The stream and non-stream
# replies carry the object where the provider puts its usage (see Fault.bad_usage).
_OPENAI = {
    "negative": ({"prompt_tokens": -5, "completion_tokens": -100, "total_tokens": -105}, "negative"),
    "huge": ({"prompt_tokens": 10**12, "completion_tokens": 10**12, "total_tokens": 2 * 10**12}, "huge"),
    "string": ({"prompt_tokens": "12", "completion_tokens": "7", "total_tokens": "19"}, "not_integer"),
    "fraction": ({"prompt_tokens": 12.5, "completion_tokens": 7.25, "total_tokens": 19.75}, "not_integer"),
    "bool": ({"prompt_tokens": True, "completion_tokens": True, "total_tokens": 2}, "not_integer"),
    "null": ({"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}, "missing"),
    "missing": ({"total_tokens": 19}, "missing"),
    "not-an-object": ("lots", "malformed"),
}
_ANTHROPIC = {
    "negative": ({"input_tokens": -5, "output_tokens": -100}, "negative"),
    "huge": ({"input_tokens": 10**12, "output_tokens": 10**12}, "huge"),
    "string": ({"input_tokens": "12", "output_tokens": "7"}, "not_integer"),
    "fraction": ({"input_tokens": 12.5, "output_tokens": 7.25}, "not_integer"),
    "bool": ({"input_tokens": True, "output_tokens": False}, "not_integer"),
    "null": ({"input_tokens": None, "output_tokens": None}, "missing"),
    "missing": ({"cache_read_input_tokens": 0}, "missing"),
    "not-an-object": ([12, 7], "malformed"),
}
_GEMINI = {  # proto3 JSON leaves zero counts out, so an absent count is 0, not an anomaly
    "negative": ({"promptTokenCount": -5, "candidatesTokenCount": -100, "totalTokenCount": -105}, "negative"),
    "huge": ({"promptTokenCount": 10**12, "candidatesTokenCount": 10**12}, "huge"),
    "string": ({"promptTokenCount": "12", "candidatesTokenCount": "7"}, "not_integer"),
    "fraction": ({"promptTokenCount": 12.5, "candidatesTokenCount": 7.25}, "not_integer"),
    "bool": ({"promptTokenCount": True, "candidatesTokenCount": True}, "not_integer"),
    "not-an-object": ("lots", "malformed"),
}
_SHAPES = {
    "openai-chat": _OPENAI,
    "anthropic-chat": _ANTHROPIC,
    "anthropic-messages": _ANTHROPIC,
    "gemini-chat": _GEMINI,
}
CASES = [
    pytest.param(route, shape, raw, reason, stream, id=f"{route}-{shape}-{'stream' if stream else 'whole'}")
    for route, shapes in _SHAPES.items()
    for shape, (raw, reason) in shapes.items()
    for stream in (False, True)
]


@pytest.mark.parametrize(("route", "shape", "raw", "reason", "stream"), CASES)
def test_faults_30_bad_usage_is_never_a_500_and_is_charged_a_bounded_figure_recorded_anomalous(
    sidecar, openai_up, anthropic_up, gemini_up, route, shape, raw, reason, stream
) -> None:
    kind = ROUTES[route][0]
    fake = fake_for(kind, openai_up, anthropic_up, gemini_up)
    fake.script([Fault.bad_usage(raw, text="Short answer.")])
    response, text = post(sidecar, route, stream=stream)
    assert response.status_code == 200
    if not stream:  # the reply reaches the client: it is well-formed apart from its usage
        reply = json.loads(text)
        assert "Short answer." in json.dumps(reply)
    else:
        events = sse_blocks(text)
        cut = shape == "huge"  # a reported output past the cap ends the stream like an endless one
        if route == "anthropic-messages":
            assert any(n == ("error" if cut else "message_stop") for n, _ in events)
        else:
            assert (events[-1][1] == "[DONE]") is not cut
    entry = entry_for(sidecar, response)
    assert entry["costBasis"] == "anomalous"
    assert entry["anomaly"] in (reason, "output_over_cap")
    assert 0 <= entry["costMicroUSD"] <= reservation_of(route)
    assert entry["usage"]["input"] >= 0 and 0 <= entry["usage"]["output"] <= 2 * CAP_TOKENS
    assert "reportedUsage" in entry
    assert metric_value(sidecar, "sluicegate_usage_anomalies_total", provider=kind) == 1
    assert_no_reservation_left_and_the_rest_can_be_spent(sidecar, openai_up)


@pytest.mark.parametrize(
    "route", ["openai-chat", "openai-completions", "anthropic-chat", "anthropic-messages", "gemini-chat"]
)
def test_faults_30_a_whole_reply_whose_output_passes_the_cap_sent_is_charged_at_most_its_reservation(
    sidecar, openai_up, anthropic_up, gemini_up, route
) -> None:
    fake = fake_for(ROUTES[route][0], openai_up, anthropic_up, gemini_up)
    fake.script([Fault.over_cap(usage=FakeUsage(12, 5_000))])
    response, text = post(sidecar, route, stream=False)
    assert response.status_code == 200 and json.loads(text)
    entry = entry_for(sidecar, response)
    assert entry["costBasis"] == "anomalous" and entry["anomaly"] == "output_over_cap"
    assert entry["reportedUsage"]["output"] == 5_000 and entry["usage"]["output"] <= 2 * CAP_TOKENS
    assert entry["costMicroUSD"] <= reservation_of(route)
    assert float(response.headers["x-sluicegate-cost-usd"]) * 1_000_000 <= reservation_of(route)
    assert_no_reservation_left_and_the_rest_can_be_spent(sidecar, openai_up)


def test_faults_30_a_correct_reply_at_its_cap_is_exact_not_anomalous(sidecar, openai_up) -> None:
    openai_up.script([Fault.ok(usage=FakeUsage(12, CAP_TOKENS))])
    response, _ = post(sidecar, "openai-chat", stream=False)
    entry = entry_for(sidecar, response)
    assert entry["costBasis"] == "exact" and "anomaly" not in entry and "reportedUsage" not in entry
    assert metric_value(sidecar, "sluicegate_usage_anomalies_total") == 0
