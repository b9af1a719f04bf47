"""Fixtures of the fake providers' wire tests: each fake on loopback, stopped after the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fakes import FakeAnthropic, FakeGemini, FakeOpenAI


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-test") as fake:
        yield fake


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key="ak") as fake:
        yield fake


@pytest.fixture
def fake_gemini() -> Iterator[FakeGemini]:
    with FakeGemini(api_key="gk") as fake:
        yield fake
