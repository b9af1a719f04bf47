"""Fixtures: a fake OpenAI upstream and the real sidecar in front of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fakes import FakeAnthropic, FakeGemini, FakeOpenAI
from tests.support.sidecar_harness import SidecarThread, connection, render_dir, tier

OPENAI_KEY = "sk-upstream-openai-secret-0001"
ANTHROPIC_KEY = "sk-ant-upstream-secret-0002"
GEMINI_KEY = "gemini-upstream-secret-0003"


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=OPENAI_KEY) as fake:
        yield fake


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=ANTHROPIC_KEY) as fake:
        yield fake


@pytest.fixture
def fake_gemini() -> Iterator[FakeGemini]:
    with FakeGemini(api_key=GEMINI_KEY) as fake:
        yield fake


@pytest.fixture
def providers_config(tmp_path: Path, fake_openai, fake_anthropic, fake_gemini) -> Path:
    return render_dir(
        tmp_path / "config",
        [
            connection("openai", "openai", ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"], base_url=fake_openai.base_url, key=OPENAI_KEY),
            connection("anthropic", "anthropic", ["claude-3-5-haiku-20241022"], base_url=fake_anthropic.base_url, key=ANTHROPIC_KEY),
            connection("gemini", "gemini", ["gemini-2.0-flash"], base_url=fake_gemini.base_url, key=GEMINI_KEY),
            tier("standard", 10, [("openai", "gpt-4o-mini")], auto={"enabled": True}),
        ],
    )


@pytest.fixture
def sidecar(providers_config: Path, tmp_path: Path) -> Iterator[SidecarThread]:
    with SidecarThread(providers_config, tmp_path / "ledger") as sc:
        yield sc
