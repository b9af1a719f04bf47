"""Fixtures: a fake OpenAI upstream and the real sidecar in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.authorityserver import FakeAuthority, LoopbackAuthority, serving
from tests.support.fakes import DEFAULT_TEXT, FakeAnthropic, FakeGemini, FakeOpenAI, FakeServer
from tests.support.sidecar_harness import SidecarThread, connection, render_dir, tier

OPENAI_KEY = "sk-upstream-openai-secret-0001"
ANTHROPIC_KEY = "sk-ant-upstream-secret-0002"
GEMINI_KEY = "gemini-upstream-secret-0003"
CLAUDE = "claude-haiku-4-5"  # a current model: the anthropic SDK warns (an error here) on deprecated ones


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
            connection(
                "openai",
                "openai",
                ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"],
                base_url=fake_openai.base_url,
                key=OPENAI_KEY,
            ),
            connection(
                "anthropic",
                "anthropic",
                [CLAUDE],
                base_url=fake_anthropic.base_url,
                key=ANTHROPIC_KEY,
            ),
            connection(
                "gemini", "gemini", ["gemini-2.0-flash"], base_url=fake_gemini.base_url, key=GEMINI_KEY
            ),
            tier("standard", 10, [("openai", "gpt-4o-mini")], auto={"enabled": True}),
        ],
    )


@pytest.fixture
def sidecar(providers_config: Path, tmp_path: Path) -> Iterator[SidecarThread]:
    with SidecarThread(providers_config, tmp_path / "ledger") as sc:
        yield sc


# -- module-scoped fakes (reset before each test) and a three-provider sidecar --------------------

GEMINI = "gemini-2.0-flash"


def reset_fake(fake: FakeServer) -> FakeServer:
    """Forget what earlier tests did to a shared fake: scripts, recorded requests, reply settings."""
    fake.script([])
    fake.requests.clear()
    fake.last_usage = None
    fake.usage = None
    fake.text = DEFAULT_TEXT
    fake.tool_input = {"location": "Paris"}
    fake.chunk_delay = 0.0
    if isinstance(fake, FakeAnthropic):
        fake.full_delta_usage = False
        fake.counted_tokens = None
    return fake


@pytest.fixture(scope="module")
def module_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=OPENAI_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def module_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=ANTHROPIC_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def module_gemini() -> Iterator[FakeGemini]:
    with FakeGemini(api_key=GEMINI_KEY) as fake:
        yield fake


@pytest.fixture
def openai_up(module_openai: FakeOpenAI) -> FakeOpenAI:
    return reset_fake(module_openai)  # type: ignore[return-value]


@pytest.fixture
def anthropic_up(module_anthropic: FakeAnthropic) -> FakeAnthropic:
    return reset_fake(module_anthropic)  # type: ignore[return-value]


@pytest.fixture
def gemini_up(module_gemini: FakeGemini) -> FakeGemini:
    return reset_fake(module_gemini)  # type: ignore[return-value]


@pytest.fixture
def three_providers(
    tmp_path: Path, openai_up: FakeOpenAI, anthropic_up: FakeAnthropic, gemini_up: FakeGemini
) -> Path:
    """One connection per provider kind (catalog prices), and a tier over the three."""
    return render_dir(
        tmp_path / "config",
        [
            connection(
                "openai", "openai", ["gpt-4o-mini", "gpt-4o"], base_url=openai_up.base_url, key=OPENAI_KEY
            ),
            connection("anthropic", "anthropic", [CLAUDE], base_url=anthropic_up.root_url, key=ANTHROPIC_KEY),
            connection("gemini", "gemini", [GEMINI], base_url=gemini_up.root_url, key=GEMINI_KEY),
            tier("standard", 10, [("openai", "gpt-4o-mini"), ("anthropic", CLAUDE), ("gemini", GEMINI)]),
        ],
    )


@pytest.fixture
def gateway(three_providers: Path, tmp_path: Path) -> Iterator[SidecarThread]:
    """The real sidecar in front of the three shared fakes."""
    with SidecarThread(three_providers, tmp_path / "ledger") as sc:
        yield sc


@pytest.fixture
async def authority() -> AsyncIterator[LoopbackAuthority]:
    """The authority's sync endpoint on loopback, answering as a ``FakeAuthority`` until told otherwise."""
    async with serving(FakeAuthority().handle) as served:
        yield served
