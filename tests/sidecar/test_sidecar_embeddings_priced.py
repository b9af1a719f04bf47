"""Embedding models are priced from the catalog, so a BudgetPolicy serves them (issue 13, item 11).

genai-prices lists embedding models with an input rate and no output rate; they bill input only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from sluicegate_cli.main import main as cli
from tests.support.fakes import FakeOpenAI, FakeUsage
from tests.support.sidecar_harness import (
    SidecarThread,
    budget,
    connection,
    ledger_lines,
    render_dir,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
EMBEDDING_MICRO_USD_PER_MTOK = 20_000  # text-embedding-3-small: $0.02 per million input tokens


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(usage=FakeUsage(1_234, 0)) as server:
        yield server


def test_an_embedding_model_priced_by_the_catalog_is_served_and_charged_under_a_budget(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    config = render_dir(
        tmp_path / "config",
        [
            connection("openai", "openai", ["text-embedding-3-small"], base_url=fake.base_url),
            budget("team-cap", 1.0, action="BLOCK"),
        ],
    )
    with SidecarThread(config, tmp_path / "ledger", access_log=False) as sc:
        client = sc.keep(OpenAI(base_url=sc.base_url, api_key="app-key", max_retries=0))
        raw = client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["first document", "second document"]
        )
        assert len(raw.parse().data) == 2
        expected = -(-1_234 * EMBEDDING_MICRO_USD_PER_MTOK // 1_000_000)  # 25 micro-USD, rounded up
        assert raw.headers["x-sluicegate-cost-usd"] == f"{expected / 1e6:.6f}"
        sc.run_sync(sc.gateway.ledger.flush())
        [entry] = wait_for(lambda: ledger_lines(sc.ledger_dir))
        assert (entry["status"], entry["costMicroUSD"], entry["costBasis"]) == (200, expected, "exact")


def test_the_examples_serve_embeddings_offline_as_make_run_does(tmp_path: Path) -> None:
    assert cli(["render", "-f", str(ROOT / "examples"), "-o", str(tmp_path / "config"), "--offline"]) == 0
    with SidecarThread(tmp_path / "config", tmp_path / "ledger", access_log=False) as sc:
        client = sc.keep(OpenAI(base_url=sc.base_url, api_key="app-key", max_retries=0))
        raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello")
        assert raw.parse().data[0].embedding
        assert raw.headers["x-sluicegate-routed-model"] == "mock/text-embedding-3-small"
        assert float(raw.headers["x-sluicegate-cost-usd"]) > 0  # priced, under the examples' budgets
