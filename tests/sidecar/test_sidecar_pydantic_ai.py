"""pydantic-ai agents through the sidecar: ``Agent("openai:…")`` (its default, the Responses API) and
``OpenAIChatModel`` (chat) with the base URL a Pod gets, and an Anthropic model on /v1/messages — a
plain run, a tool, a structured ``output_type``, ``run_stream`` — against fake upstreams and offline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.models import Model
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider

from sluicegate_cli.main import main as cli
from tests.sidecar.conftest import CLAUDE
from tests.support.fakes import DEFAULT_TEXT, FakeServer
from tests.support.sidecar_harness import SidecarThread, ledger_entries

ROOT = Path(__file__).resolve().parents[2]
APP_KEY = "sk-app-placeholder"
# kind: (the sidecar's model against the fakes, offline, the upstream answering it, the path it calls)
KINDS = {
    "openai": ("openai/gpt-4o-mini", "gpt-4o-mini", "openai", "/v1/responses"),
    "openai-chat": ("openai/gpt-4o-mini", "gpt-4o-mini", "openai", "/v1/chat/completions"),
    "anthropic": (CLAUDE, "claude-haiku", "anthropic", "/v1/messages"),
}
EACH = pytest.mark.parametrize("kind", list(KINDS))
T = TypeVar("T")


class City(BaseModel):
    city: str
    sunny: bool


@pytest.fixture
def model_for(monkeypatch) -> Callable[[SidecarThread, str, str], Model]:
    """A pydantic-ai model for ``kind`` on a sidecar, set up the way its users do it."""

    def make(sc: SidecarThread, kind: str, name: str) -> Model:
        if kind == "openai":  # the environment a Pod gets from the webhook, and the model string
            monkeypatch.setenv("OPENAI_BASE_URL", sc.base_url)
            monkeypatch.setenv("OPENAI_API_KEY", APP_KEY)
            model = Agent(f"openai:{name}").model
            assert isinstance(model, OpenAIResponsesModel)  # pydantic-ai's default for "openai:"
            return model
        if kind == "openai-chat":
            return OpenAIChatModel(name, provider=OpenAIProvider(base_url=sc.base_url, api_key=APP_KEY))
        return AnthropicModel(name, provider=AnthropicProvider(base_url=sc.root_url, api_key=APP_KEY))

    return make


@pytest.fixture
def upstreams(openai_up, anthropic_up) -> dict[str, FakeServer]:
    return {"openai": openai_up, "anthropic": anthropic_up}


def weather_agent(model: Model, calls: list[str]) -> Agent[None, str]:
    agent = Agent(model, instructions="Use the tool.")

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"Sunny in {city}"

    return agent


def run(model: Model, work: Callable[[Model], Awaitable[T]]) -> T:
    """``work(model)`` on an event loop of its own; the model's client is closed after."""

    async def go() -> T:
        try:
            return await work(model)
        finally:
            await model.client.close()  # type: ignore[attr-defined]

    return asyncio.run(go())


async def streamed(agent: Agent[None, Any], prompt: str) -> tuple[list[str], str]:
    """(the text deltas ``run_stream`` yields, its final output)."""
    async with agent.run_stream(prompt) as result:
        deltas = [delta async for delta in result.stream_text(delta=True, debounce_by=None)]
        return deltas, await result.get_output()


async def run_and_stream(model: Model) -> tuple[str, list[str], str]:
    agent = Agent(model, instructions="Be brief.")
    whole = (await agent.run("Say hello")).output
    return (whole, *await streamed(agent, "Say hello"))


@EACH
def test_an_agent_runs_and_streams_through_the_sidecar(gateway, upstreams, model_for, kind) -> None:
    name, _, upstream, path = KINDS[kind]
    whole, deltas, output = run(model_for(gateway, kind, name), run_and_stream)
    assert whole == DEFAULT_TEXT
    assert len(deltas) > 1 and "".join(deltas) == output == DEFAULT_TEXT
    assert [r.path for r in upstreams[upstream].requests] == [path, path]
    entries = ledger_entries(gateway)
    assert [e["status"] for e in entries] == [200, 200] and all(e["costMicroUSD"] > 0 for e in entries)


@EACH
def test_an_agent_calls_its_tool_and_answers_with_the_result(gateway, upstreams, model_for, kind) -> None:
    name, _, upstream, path = KINDS[kind]
    upstreams[upstream].tool_input = {"city": "Paris"}
    calls: list[str] = []

    async def ask(model: Model) -> str:
        return (await weather_agent(model, calls).run("Weather in Paris?")).output

    assert run(model_for(gateway, kind, name), ask) == DEFAULT_TEXT and calls == ["Paris"]
    first, second = upstreams[upstream].requests
    assert first.path == second.path == path and "Sunny in Paris" in second.body.decode()
    assert [e["status"] for e in ledger_entries(gateway)] == [200, 200]


async def describe(model: Model) -> City:
    return (await Agent(model, output_type=City).run("Describe a city.")).output


@EACH
def test_an_agent_returns_its_structured_output_type(gateway, upstreams, model_for, kind) -> None:
    name, _, upstream, _ = KINDS[kind]
    upstreams[upstream].tool_input = {"city": "Paris", "sunny": True}  # its output tool, called
    assert run(model_for(gateway, kind, name), describe) == City(city="Paris", sunny=True)


# -- offline ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> Iterator[SidecarThread]:
    base = tmp_path_factory.mktemp("offline-pydantic-ai")
    assert cli(["render", "-f", str(ROOT / "examples"), "-o", str(base / "config"), "--offline"]) == 0
    with SidecarThread(base / "config", base / "ledger", access_log=False) as sidecar:
        yield sidecar


@EACH
def test_an_agent_runs_offline_on_the_mock(offline, model_for, kind) -> None:
    _, name, _, _ = KINDS[kind]
    calls: list[str] = []

    async def everything(model: Model) -> tuple[tuple[str, list[str], str], str, City]:
        tool_answer = (await weather_agent(model, calls).run("Weather?")).output
        return await run_and_stream(model), tool_answer, await describe(model)

    (whole, deltas, output), tool_answer, made = run(model_for(offline, kind, name), everything)
    assert len(whole.split()) > 5 and len(deltas) > 1 and "".join(deltas) == output
    assert tool_answer and len(calls) == 1
    assert isinstance(made, City)
