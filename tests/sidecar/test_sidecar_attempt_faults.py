"""A fault of the sidecar's own inside an attempt (a bug, not the upstream's failure) never drops spend
nor holds a reservation: sent, what it reserved is kept as spend and written to the ledger (the
provider may have billed it); not yet sent, it is given back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from sluicegate_sidecar.providers.openai import OpenAIAdapter
from tests.support.fakes import FakeOpenAI
from tests.support.sidecar_harness import SidecarThread, budget, connection, ledger_entries, render_dir

KEY = "sk-attempt-faults-0000000000000001"
CAP_USD = 5.0


def chat(sidecar: SidecarThread) -> httpx.Response:
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 64}
    return httpx.post(f"{sidecar.base_url}/chat/completions", json=payload, timeout=10)


def config(directory: Path, fake: FakeOpenAI) -> Path:
    return render_dir(
        directory,
        [
            *connection("openai", "openai", ["gpt-4o-mini"], base_url=fake.base_url, key=KEY),
            budget("cap", CAP_USD),
        ],
    )


def remaining(response: httpx.Response) -> float:
    assert response.status_code == 200, response.text
    return float(response.headers["x-sluicegate-budget-remaining-usd"])


def cost(response: httpx.Response) -> float:
    return float(response.headers["x-sluicegate-cost-usd"])


def broken(*args: Any, **kwargs: Any) -> Any:
    raise KeyError("a bug")


def one_faulty_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> tuple[httpx.Response, httpx.Response, list[dict[str, Any]], int]:
    """A request whose attempt hits a fault of ours (``OpenAIAdapter.<method>`` raising), then one
    served normally: both replies, the ledger's entries and how many requests reached the provider."""
    with (
        FakeOpenAI(api_key=KEY) as fake,
        SidecarThread(config(tmp_path / "cfg", fake), tmp_path / "led") as sc,
    ):
        monkeypatch.setattr(OpenAIAdapter, method, broken)
        failed = chat(sc)
        monkeypatch.undo()
        served = chat(sc)
        return failed, served, ledger_entries(sc), len(fake.requests)


def test_a_fault_after_the_upstream_answered_keeps_the_reservation_as_spend_in_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed, served, entries, sent = one_faulty_request(tmp_path, monkeypatch, "parse")
    assert failed.status_code == 500
    assert sent == 2  # the first reached the provider, which may bill it
    first, second = entries
    assert first["status"] == "upstream_bad_response" and first["costMicroUSD"] > 0  # the worst case
    assert second["status"] == 200 and second["costMicroUSD"] == round(cost(served) * 1_000_000)
    spent = (first["costMicroUSD"] + second["costMicroUSD"]) / 1_000_000
    assert remaining(served) == pytest.approx(CAP_USD - spent, abs=2e-6)  # nothing left held


def test_a_fault_before_anything_was_sent_gives_the_reservation_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed, served, entries, sent = one_faulty_request(tmp_path, monkeypatch, "build")
    assert failed.status_code == 500
    assert sent == 1  # only the second
    assert [entry["status"] for entry in entries] == [200]
    assert remaining(served) == pytest.approx(CAP_USD - cost(served), abs=2e-6)
