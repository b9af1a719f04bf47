"""openai-agents (its default model: the Responses API) pointed at the sidecar, with function tools:
against the OpenAI fake (passed through), the Anthropic and Gemini fakes (translated), and offline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIProvider,
    RunConfig,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI
from openai.types.shared import Reasoning

from tests.sidecar.conftest import CLAUDE, GEMINI
from tests.support.fakes import DEFAULT_TEXT, FakeServer
from tests.support.fakes_anthropic import THINKING_TEXT, signature
from tests.support.sidecar_harness import SidecarThread, connection, ledger_entries, priced, render_dir, tier

MODELS = {"openai": "openai/gpt-4o-mini", "anthropic": f"anthropic/{CLAUDE}", "gemini": f"gemini/{GEMINI}"}


@pytest.fixture(autouse=True)
def no_tracing() -> Iterator[None]:
    set_tracing_disabled(True)  # the SDK would otherwise export traces to OpenAI
    yield
    set_tracing_disabled(False)


@pytest.fixture
def upstreams(openai_up, anthropic_up, gemini_up) -> dict[str, FakeServer]:
    return {"openai": openai_up, "anthropic": anthropic_up, "gemini": gemini_up}


def run(sc: SidecarThread, agent: Agent, prompt: str, *, streamed: bool = False) -> object:
    """Run ``agent`` with the SDK's own OpenAI provider pointed at the sidecar (Responses API)."""

    async def go() -> object:
        async with AsyncOpenAI(base_url=sc.base_url, api_key="sk-app-placeholder", max_retries=0) as c:
            config = RunConfig(model_provider=OpenAIProvider(openai_client=c, use_responses=True))
            if not streamed:
                return (await Runner.run(agent, prompt, run_config=config)).final_output
            result = Runner.run_streamed(agent, prompt, run_config=config)
            async for _ in result.stream_events():
                pass
            return result.final_output

    return asyncio.run(go())


def weather_tool(calls: list[str]):  # type: ignore[no-untyped-def]
    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"Sunny in {city}"

    return get_weather


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
def test_an_agent_calls_its_tool_and_answers_through_the_openai_pass_through(
    gateway, openai_up, streamed
) -> None:
    openai_up.tool_input = {"city": "Paris"}
    calls: list[str] = []
    agent = Agent(
        name="weather", instructions="Use the tool.", model=MODELS["openai"], tools=[weather_tool(calls)]
    )
    assert run(gateway, agent, "Weather in Paris?", streamed=streamed) == DEFAULT_TEXT
    assert calls == ["Paris"]
    first, second = (r.json for r in openai_up.requests[-2:])
    assert first["tools"][0]["name"] == "get_weather" and first["instructions"] == "Use the tool."
    outputs = [item for item in second["input"] if item.get("type") == "function_call_output"]
    assert outputs and outputs[0]["output"] == "Sunny in Paris"
    entries = ledger_entries(gateway)[-2:]
    assert [e["status"] for e in entries] == [200, 200] and all(e["costMicroUSD"] > 0 for e in entries)


@pytest.mark.parametrize("kind", ["anthropic", "gemini"])
@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
def test_an_agent_on_a_translated_provider_answers_and_calls_its_tool(
    gateway, upstreams, kind, streamed
) -> None:
    plain = Agent(name="plain", instructions="Be brief.", model=MODELS[kind])
    assert run(gateway, plain, "Hello?", streamed=streamed) == DEFAULT_TEXT
    upstreams[kind].tool_input = {"city": "Lisbon"}
    calls: list[str] = []
    agent = Agent(
        name="weather",
        model=MODELS[kind],
        tools=[weather_tool(calls)],
        tool_use_behavior="stop_on_first_tool",  # these fakes call a tool whenever one is offered
    )
    assert run(gateway, agent, "Weather in Lisbon?", streamed=streamed) == "Sunny in Lisbon"
    assert calls == ["Lisbon"]
    assert "get_weather" in json.dumps(upstreams[kind].last_request.json["tools"])
    assert ledger_entries(gateway)[-1]["connection"] == kind


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
def test_an_agent_reasoning_on_anthropic_sends_the_signed_thinking_back_through_its_tool_loop(
    gateway, anthropic_up, streamed
) -> None:
    anthropic_up.tool_input = {"city": "Oslo"}
    calls: list[str] = []
    agent = Agent(
        name="weather",
        model=MODELS["anthropic"],
        tools=[weather_tool(calls)],
        model_settings=ModelSettings(reasoning=Reasoning(effort="low")),
    )
    assert run(gateway, agent, "Weather in Oslo?", streamed=streamed) == DEFAULT_TEXT
    assert calls == ["Oslo"]
    first, second = (r.json for r in anthropic_up.requests[-2:])
    assert first["thinking"] == second["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assistant = second["messages"][1]
    thinking = {"type": "thinking", "thinking": THINKING_TEXT, "signature": signature(THINKING_TEXT)}
    assert assistant["role"] == "assistant" and assistant["content"][0] == thinking
    assert assistant["content"][1]["type"] == "tool_use"


@pytest.fixture
def offline(tmp_path: Path) -> Iterator[SidecarThread]:
    config = render_dir(
        tmp_path / "config",
        [
            connection("mock", "mock", [priced("mock-small", 0.1, 0.4)], mock={"latencyMs": 0, "seed": 7}),
            tier("local", 1, [("mock", "mock-small")]),
        ],
    )
    with SidecarThread(config, tmp_path / "ledger") as sc:
        yield sc


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
def test_an_agent_runs_offline_against_the_mock_provider(offline, streamed) -> None:
    plain = Agent(name="plain", model="mock/mock-small")
    answer = run(offline, plain, "Hello?", streamed=streamed)
    assert isinstance(answer, str) and len(answer.split()) > 10
    calls: list[str] = []
    agent = Agent(
        name="weather",
        model="tier:local",
        tools=[weather_tool(calls)],
        model_settings=ModelSettings(tool_choice="required"),  # the SDK resets it after the call
    )
    assert isinstance(run(offline, agent, "Weather?", streamed=streamed), str)
    assert len(calls) == 1
    assert [e["status"] for e in ledger_entries(offline)] == [200] * 3  # plain, tool call, answer
