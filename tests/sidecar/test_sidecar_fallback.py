"""Fallback through the real sidecar against fault-injecting fakes (faults 7, 9–12).

Two OpenAI connections, ``primary`` and ``backup``, each with its own fake, sit in the tier ``chain``
(strategy ordered). Each test asserts what the client sees and which upstreams were called.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluicegate_sidecar.routing.health import HealthBook
from tests.support.fakes import DEFAULT_TEXT, FakeOpenAI, Fault, closed_port
from tests.support.sidecar_harness import (
    SidecarThread,
    budget,
    connection,
    ledger_entries,
    metric_value,
    priced,
    render_dir,
    tier,
    wait_until,
)

PRIMARY_KEY = "sk-primary-upstream-0000000000000001"
BACKUP_KEY = "sk-backup-upstream-0000000000000002"
FAST = {"connectSeconds": 0.5, "firstByteSeconds": 0.5, "idleSeconds": 0.5, "totalSeconds": 10}
MODEL = "gpt-4o-mini"
PRIMARY = f"primary/{MODEL}"


@pytest.fixture(scope="module")
def primary_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=PRIMARY_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def backup_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=BACKUP_KEY) as fake:
        yield fake


@pytest.fixture
def primary(primary_fake: FakeOpenAI) -> FakeOpenAI:
    from tests.sidecar.conftest import reset_fake

    return reset_fake(primary_fake)  # type: ignore[return-value]


@pytest.fixture
def backup(backup_fake: FakeOpenAI) -> FakeOpenAI:
    from tests.sidecar.conftest import reset_fake

    return reset_fake(backup_fake)  # type: ignore[return-value]


def chain_config(
    directory: Path,
    primary: FakeOpenAI,
    backup: FakeOpenAI,
    *,
    primary_url: str | None = None,
    primary_models: list[Any] | None = None,
    backup_models: list[Any] | None = None,
    strategy: str = "ordered",
    extra: list[Any] | None = None,
) -> Path:
    return render_dir(
        directory,
        [
            connection(
                "primary", "openai", primary_models or [MODEL, "gpt-4o"],
                base_url=primary_url or primary.base_url, key=PRIMARY_KEY, timeouts=FAST,
            ),
            connection("backup", "openai", backup_models or [MODEL, "gpt-4o"], base_url=backup.base_url, key=BACKUP_KEY, timeouts=FAST),
            tier("chain", 10, [("primary", MODEL), ("backup", MODEL)], strategy=strategy),
            tier("mixed", 20, [("primary", MODEL), ("backup", "gpt-4o")], strategy="ordered"),
            *(extra or []),
        ],
    )  # fmt: skip


@pytest.fixture
def sidecar(tmp_path: Path, primary: FakeOpenAI, backup: FakeOpenAI) -> Iterator[SidecarThread]:
    with SidecarThread(chain_config(tmp_path / "cfg", primary, backup), tmp_path / "ledger") as sc:
        yield sc


def chat(sidecar: SidecarThread, model: str = "tier:chain", **body: Any) -> httpx.Response:
    payload = {"model": model, "messages": [{"role": "user", "content": "hello"}], **body}
    return httpx.post(f"{sidecar.base_url}/chat/completions", json=payload, timeout=10)


def fallbacks(response: httpx.Response) -> str:
    return response.headers["x-sluicegate-fallbacks"]


def served_by_backup(response: httpx.Response, backup: FakeOpenAI) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == DEFAULT_TEXT
    assert len(backup.requests) >= 1
    assert backup.last_request.headers["authorization"] == f"Bearer {BACKUP_KEY}"


# -- 5xx, connect, reset, timeouts ------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_falls_back_to_the_next_candidate_and_says_so(sidecar, primary, backup, status) -> None:
    primary.script([Fault.status(status)])
    response = chat(sidecar)
    served_by_backup(response, backup)
    assert len(primary.requests) == 1 and len(backup.requests) == 1
    assert fallbacks(response) == "1; primary/gpt-4o-mini=5xx"
    assert metric_value(sidecar, "sluicegate_fallbacks_total", reason="5xx") == 1
    assert (
        metric_value(sidecar, "sluicegate_fallbacks_total", **{"from": PRIMARY, "to": f"backup/{MODEL}"}) == 1
    )


def test_a_refused_connection_falls_back(tmp_path, primary, backup) -> None:
    config = chain_config(
        tmp_path / "cfg", primary, backup, primary_url=f"http://127.0.0.1:{closed_port()}/v1"
    )
    with SidecarThread(config, tmp_path / "ledger") as sc:
        response = chat(sc)
    served_by_backup(response, backup)
    assert fallbacks(response) == "1; primary/gpt-4o-mini=connect"
    assert primary.requests == []


def test_a_base_url_with_credentials_beside_the_bearer_key_falls_back_holding_nothing(
    tmp_path, primary, backup
) -> None:
    """Credentials in the base URL would go as Basic auth in place of the key's own Authorization
    header: the attempt fails before anything is sent, its reservation is given back, the next
    candidate serves (the code before answered a bare 500 and kept the reservation)."""
    url = primary.base_url.replace("http://", "http://gw-user:gw-pass@", 1)
    config = chain_config(tmp_path / "cfg", primary, backup, primary_url=url, extra=[budget("day-cap", 5.0)])
    with SidecarThread(config, tmp_path / "ledger") as sc:
        replies = [chat(sc), chat(sc)]
    for response in replies:
        served_by_backup(response, backup)
        assert fallbacks(response) == "1; primary/gpt-4o-mini=connect"
    assert primary.requests == []
    spent = sum(float(response.headers["x-sluicegate-cost-usd"]) for response in replies)
    remaining = float(replies[-1].headers["x-sluicegate-budget-remaining-usd"])
    assert remaining == pytest.approx(5.0 - spent, abs=2e-6)  # no reservation left held


def test_a_connection_reset_before_any_byte_falls_back(sidecar, primary, backup) -> None:
    primary.script([Fault.reset()])
    response = chat(sidecar)
    served_by_backup(response, backup)
    assert len(primary.requests) == 1
    assert fallbacks(response) == "1; primary/gpt-4o-mini=connect"


@pytest.mark.parametrize("stream", [False, True])
def test_no_first_byte_in_time_falls_back(sidecar, primary, backup, stream) -> None:
    primary.script([Fault.hang(2)])
    response = chat(sidecar, stream=stream)
    assert response.status_code == 200, response.text
    assert DEFAULT_TEXT.split()[0] in response.text
    assert len(primary.requests) == 1 and len(backup.requests) == 1
    assert fallbacks(response) == "1; primary/gpt-4o-mini=timeout"


def test_a_reply_whose_body_stalls_halfway_falls_back_once_its_total_deadline_passes_and_is_charged(
    tmp_path, primary, backup
) -> None:
    slow_body = {**FAST, "totalSeconds": 1}
    config = render_dir(
        tmp_path / "cfg",
        [
            connection("primary", "openai", [MODEL], base_url=primary.base_url, key=PRIMARY_KEY, timeouts=slow_body),
            connection("backup", "openai", [MODEL], base_url=backup.base_url, key=BACKUP_KEY, timeouts=FAST),
            tier("chain", 10, [("primary", MODEL), ("backup", MODEL)]),
        ],
    )  # fmt: skip
    primary.script([Fault.stream_hang(after=1, seconds=30)])  # unstreamed: half the body, then nothing
    with SidecarThread(config, tmp_path / "ledger") as sc:
        started = time.monotonic()
        response = chat(sc)
        took = time.monotonic() - started
        entries = ledger_entries(sc)
    served_by_backup(response, backup)
    assert fallbacks(response) == "1; primary/gpt-4o-mini=timeout"
    assert 1 <= took < 5
    # the provider may have billed the stalled reply: its attempt is in the ledger, as reserved
    assert [(e["connection"], e["status"]) for e in entries] == [
        ("primary", "upstream_timeout"),
        ("backup", 200),
    ]


def test_a_reply_whose_connection_resets_halfway_through_its_body_falls_back(
    sidecar, primary, backup
) -> None:
    primary.script([Fault.stream_reset(after=1)])  # unstreamed: half the body, then a TCP reset
    response = chat(sidecar)
    served_by_backup(response, backup)
    assert fallbacks(response) == "1; primary/gpt-4o-mini=connect"
    entries = ledger_entries(sidecar)
    assert [(e["connection"], e["status"]) for e in entries] == [
        ("primary", "upstream_connect"),
        ("backup", 200),
    ]


def test_no_first_byte_anywhere_is_a_504_upstream_timeout(sidecar, primary, backup) -> None:
    primary.script([Fault.hang(2)])
    backup.script([Fault.hang(2)])
    response = chat(sidecar)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert len(primary.requests) == 1 and len(backup.requests) == 1
    assert fallbacks(response) == "2; primary/gpt-4o-mini=timeout, backup/gpt-4o-mini=timeout"


def test_all_candidates_failing_is_a_502_upstream_error(sidecar, primary, backup) -> None:
    primary.script([Fault.status(500)])
    backup.script([Fault.status(503)])
    response = chat(sidecar)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"


@pytest.mark.parametrize(
    ("fallback", "fault", "status"),
    [
        ({"maxRetries": 0}, Fault.status(500), 502),
        ({"retryOn": ["429"]}, Fault.status(500), 502),
        ({"retryOn": ["5xx"]}, Fault.hang(2), 504),
    ],
    ids=["no-retries", "5xx-not-retried", "timeout-not-retried"],
)
def test_the_tiers_fallback_policy_limits_what_is_retried(
    tmp_path, primary, backup, fallback, fault, status
) -> None:
    policy = tier(
        "strict", 30, [("primary", MODEL), ("backup", MODEL)], strategy="ordered", fallback=fallback
    )
    with SidecarThread(
        chain_config(tmp_path / "cfg", primary, backup, extra=[policy]), tmp_path / "ledger"
    ) as sc:
        primary.script([fault])
        response = chat(sc, "tier:strict")
    assert response.status_code == status
    assert len(primary.requests) == 1 and backup.requests == []


# -- 429 and Retry-After ----------------------------------------------------------------------------


def _http_date(seconds_ahead: float) -> str:
    return email.utils.formatdate(time.time() + seconds_ahead, usegmt=True)


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "2"},
        {"retry-after": "HTTP-DATE"},
        {"retry-after-ms": "2000"},
        {"retry-after": "soon, maybe"},
    ],
    ids=["seconds", "http-date", "milliseconds", "garbage"],
)
def test_a_429_falls_back_and_cools_the_candidate_down(sidecar, primary, backup, headers) -> None:
    if headers.get("retry-after") == "HTTP-DATE":
        headers = {"retry-after": _http_date(5)}
    primary.script([Fault.status(429, headers=headers)])
    first = chat(sidecar)
    served_by_backup(first, backup)
    assert fallbacks(first) == "1; primary/gpt-4o-mini=429"
    second = chat(sidecar)
    served_by_backup(second, backup)
    assert len(primary.requests) == 1, "the rate-limited candidate was tried again during its cool-down"
    assert len(backup.requests) == 2
    assert fallbacks(second) == "0"


def test_every_candidate_rate_limited_is_a_429_with_retry_after(sidecar, primary, backup) -> None:
    primary.script([Fault.status(429, headers={"retry-after": "3"})])
    backup.script([Fault.status(429, headers={"retry-after": "7"})])
    response = chat(sidecar)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert response.headers["retry-after"] == "7"


# -- bad responses, auth, the request's own errors, pinned models -----------------------------------


@pytest.mark.parametrize("fault", [Fault.html(), Fault.invalid_json()], ids=["html", "invalid-json"])
def test_a_200_that_is_not_a_valid_reply_falls_back(sidecar, primary, backup, fault) -> None:
    primary.script([fault])
    response = chat(sidecar)
    served_by_backup(response, backup)
    assert fallbacks(response) == "1; primary/gpt-4o-mini=bad_response"


def test_a_200_that_is_not_a_valid_reply_is_a_502_when_nothing_is_left(sidecar, primary, backup) -> None:
    primary.script([Fault.html()])
    response = chat(sidecar, PRIMARY)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "bad_upstream_response"
    assert "nginx" not in response.text
    assert backup.requests == []


REVOKED = "Incorrect API key provided: sk-prim************wxyz. You can find your API key at https://x."


def test_a_401_is_a_generic_error_without_key_material_and_no_retry_on_that_key(
    sidecar, primary, backup
) -> None:
    primary.script([Fault.status(401, message=REVOKED)])
    response = chat(sidecar, PRIMARY)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    for fragment in ("sk-", "wxyz", "Incorrect API key", PRIMARY_KEY[:12]):
        assert fragment not in response.text
    assert len(primary.requests) == 1 and backup.requests == []
    again = chat(sidecar, PRIMARY)  # the key is benched: not sent again
    assert again.status_code == 503 and again.json()["error"]["code"] == "no_healthy_upstream"
    assert len(primary.requests) == 1


def test_a_401_falls_back_to_the_other_connection_and_later_requests_skip_the_benched_one(
    sidecar, primary, backup
) -> None:
    primary.script([Fault.status(401, message=REVOKED)])
    first = chat(sidecar)
    served_by_backup(first, backup)
    assert fallbacks(first) == "1; primary/gpt-4o-mini=auth"
    assert "wxyz" not in str(first.headers)
    second = chat(sidecar, stream=True)
    assert second.status_code == 200
    third = chat(sidecar, "tier:mixed")  # every model of the benched connection is skipped
    assert third.status_code == 200
    assert len(primary.requests) == 1 and len(backup.requests) == 3
    assert backup.last_request.json["model"] == "gpt-4o"


def test_a_pinned_connection_model_is_never_switched(sidecar, primary, backup) -> None:
    primary.script([Fault.status(500)])
    response = chat(sidecar, PRIMARY)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert backup.requests == []


def test_a_pinned_provider_model_falls_back_only_to_the_same_model(tmp_path, primary, backup) -> None:
    config = chain_config(tmp_path / "cfg", primary, backup, backup_models=["gpt-4o"])
    with SidecarThread(config, tmp_path / "ledger") as sc:
        primary.script([Fault.status(500)])
        response = chat(sc, "openai/gpt-4o-mini")
    assert response.status_code == 502
    assert backup.requests == []  # backup serves gpt-4o only: not a candidate for gpt-4o-mini


def test_a_pinned_provider_model_may_move_to_another_connection_of_that_model(
    sidecar, primary, backup
) -> None:
    primary.script([Fault.status(500)])
    response = chat(sidecar, "openai/gpt-4o-mini")
    served_by_backup(response, backup)
    assert backup.last_request.json["model"] == MODEL
    assert response.headers["x-sluicegate-routed-model"] == f"openai/{MODEL}"


def test_a_400_from_the_upstream_is_passed_through_without_fallback(sidecar, primary, backup) -> None:
    message = "Invalid 'messages[0].content': string too long. Expected a maximum length of 1048576."
    primary.script([Fault.status(400, message=message)])
    response = chat(sidecar)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == message
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert backup.requests == []
    assert fallbacks(response) == "1; primary/gpt-4o-mini=400"


# -- ordering and the circuit breaker ---------------------------------------------------------------


def test_cheapest_ordering_follows_prices_and_the_request_size(tmp_path, primary, backup) -> None:
    # primary: dear input, cheap output; backup: cheap input, dear output. A ~1000-token prompt.
    config = chain_config(
        tmp_path / "cfg", primary, backup, strategy="cheapest",
        primary_models=[priced(MODEL, 10.0, 1.0), "gpt-4o"], backup_models=[priced(MODEL, 1.0, 10.0), "gpt-4o"],
    )  # fmt: skip
    prompt = "word " * 800
    with SidecarThread(config, tmp_path / "ledger") as sc:
        short = chat(sc, messages=[{"role": "user", "content": prompt}], max_tokens=10)
        assert short.status_code == 200 and (len(primary.requests), len(backup.requests)) == (0, 1)
        long = chat(sc, messages=[{"role": "user", "content": prompt}], max_tokens=5000)
        assert long.status_code == 200 and (len(primary.requests), len(backup.requests)) == (1, 1)


def test_the_circuit_opens_after_repeated_failures_and_closes_after_the_cool_down(
    tmp_path, primary, backup
) -> None:
    health = HealthBook(failure_threshold=2, base_cooldown=1.0)
    config = chain_config(tmp_path / "cfg", primary, backup)
    with SidecarThread(config, tmp_path / "ledger", health=health) as sc:
        primary.script([Fault.status(500), Fault.status(500)])
        assert chat(sc).status_code == 200 and chat(sc).status_code == 200
        assert len(primary.requests) == 2
        assert metric_value(sc, "sluicegate_circuit_state", connection="primary", model=MODEL) == 2
        skipped = chat(sc)  # open: not tried
        assert skipped.status_code == 200 and fallbacks(skipped) == "0"
        assert len(primary.requests) == 2 and len(backup.requests) == 3
        wait_until(
            lambda: metric_value(sc, "sluicegate_circuit_state", connection="primary", model=MODEL) == 1
        )
        probe = chat(sc)  # half-open: one probe, which succeeds and closes the circuit
        assert probe.status_code == 200 and len(primary.requests) == 3 and len(backup.requests) == 3
        assert metric_value(sc, "sluicegate_circuit_state", connection="primary", model=MODEL) == 0
        assert chat(sc).status_code == 200 and len(primary.requests) == 4
