"""fault 31: an upstream error that echoes the connection's key — whole, cut, masked, or of a shape no
pattern knows — never shows any 8+ character fragment of it to the app, the request log, the ledger
or /metrics; not from a 4xx passed through, not from an error event inside a stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.fakes import FakeAnthropic, FakeGemini, FakeOpenAI, FakeServer, Fault
from tests.support.sidecar_harness import (
    SidecarThread,
    connection,
    ledger_entries,
    priced,
    render_dir,
    wait_until,
)

# Keys of the shapes providers issue, and one no shape pattern knows.
OPENAI_KEY = "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78"
PLAIN_KEY = "tok9f8e7d6c5b4a3928170abcdefXYZ"  # an OpenAI-compatible server's: no sk-, no prefix
ANTHROPIC_KEY = "sk-ant-api03-Zy98Xw76Vu54Ts32Rq10PoNmLkJi"
GEMINI_KEY = "AIzaSyD3mo-Key_F0r7heGemini1Upstream42"
CLAUDE = "claude-haiku-4-5"
GEMINI = "gemini-2.0-flash"


def fragments(key: str) -> list[str]:
    return [key[i : i + 8] for i in range(len(key) - 7)]


def leaked(text: str, key: str) -> list[str]:
    """Every 8-character fragment of ``key`` found in ``text``."""
    return [part for part in fragments(key) if part in text]


@dataclass(frozen=True)
class Case:
    connection: str
    model: str
    key: str
    status: int
    body: bytes


def openai_error(message: str, code: str | None = None, kind: str = "invalid_request_error") -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


def anthropic_error(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


def gemini_error(status: int, state: str, message: str, reason: str | None = None) -> bytes:
    error: dict[str, object] = {"code": status, "message": message, "status": state}
    if reason is not None:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
    return json.dumps({"error": error}).encode()


K, P, A, G = OPENAI_KEY, PLAIN_KEY, ANTHROPIC_KEY, GEMINI_KEY
MASKED = f"sk-proj-{'*' * 28}{K[-4:]}"  # how OpenAI echoes a wrong key
CASES = {
    "openai 401 Incorrect API key provided": Case(
        "openai", "gpt-4o-mini", K, 401,
        openai_error(f"Incorrect API key provided: {MASKED}. You can find your API key at "
                     "https://platform.openai.com/account/api-keys.", "invalid_api_key"),
    ),
    "openai 400 quoting the key with its sk- cut off": Case(
        "openai", "gpt-4o-mini", K, 400,
        openai_error(f"API key '{K[3:]}' has no access to model gpt-4o-mini", "model_not_available"),
    ),
    "openai 404 quoting a middle fragment": Case(
        "openai", "gpt-4o-mini", K, 404,
        openai_error(f"The model does not exist or key ...{K[10:22]}... has no access to it.", "model_not_found"),
    ),
    "compatible 404 quoting a key of no known shape": Case(
        "compat", "local-model", P, 404,
        openai_error(f"API key '{P}' has no access to model local-model", "model_not_found"),
    ),
    "compatible 400 echoing the request headers": Case(
        "compat", "local-model", P, 400,
        openai_error(f"bad request; headers were {{'authorization': 'Bearer {P}'}}; token={P[2:]}"),
    ),
    "compatible 400 with the key as the error code": Case(
        "compat", "local-model", P, 400,
        json.dumps({"error": {"message": "bad key", "type": "invalid_request_error", "code": P}}).encode(),
    ),
    "anthropic 401 authentication_error": Case(
        "anthropic", CLAUDE, A, 401, anthropic_error("authentication_error", f"invalid x-api-key {A}"),
    ),
    "anthropic 400 invalid_request_error quoting a fragment": Case(
        "anthropic", CLAUDE, A, 400,
        anthropic_error("invalid_request_error", f"key {A[7:30]} is not enabled for this model"),
    ),
    "gemini 400 API_KEY_INVALID": Case(
        "gemini", GEMINI, G, 400,
        gemini_error(400, "INVALID_ARGUMENT", f"API key not valid: {G}. Please pass a valid API key.",
                     "API_KEY_INVALID"),
    ),
    "gemini 400 INVALID_ARGUMENT quoting the key without AIza": Case(
        "gemini", GEMINI, G, 400,
        gemini_error(400, "INVALID_ARGUMENT", f"Invalid value at 'key' ({G[4:]}): not a project key"),
    ),
}  # fmt: skip


@dataclass
class Upstreams:
    openai: FakeOpenAI
    compat: FakeOpenAI
    anthropic: FakeAnthropic
    gemini: FakeGemini

    def of(self, name: str) -> FakeServer:
        return getattr(self, name)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    with (
        FakeOpenAI(api_key=K) as openai,
        FakeOpenAI(api_key=P) as compat,
        FakeAnthropic(api_key=A) as anthropic,
        FakeGemini(api_key=G) as gemini,
    ):
        yield Upstreams(openai, compat, anthropic, gemini)


@pytest.fixture
def sidecar(tmp_path: Path, upstreams: Upstreams) -> Iterator[SidecarThread]:
    for fake in (upstreams.openai, upstreams.compat, upstreams.anthropic, upstreams.gemini):
        fake.script([])
        fake.requests.clear()
    config = render_dir(
        tmp_path / "config",
        [
            connection("openai", "openai", ["gpt-4o-mini"], base_url=upstreams.openai.base_url, key=K),
            connection(
                "compat",
                "openai-compatible",
                [priced("local-model")],
                base_url=upstreams.compat.base_url,
                key=P,
            ),
            connection("anthropic", "anthropic", [CLAUDE], base_url=upstreams.anthropic.root_url, key=A),
            connection("gemini", "gemini", [GEMINI], base_url=upstreams.gemini.root_url, key=G),
        ],
    )
    with SidecarThread(config, tmp_path / "ledger") as sc:
        yield sc


def everything_outside(
    sidecar: SidecarThread, capfd: pytest.CaptureFixture[str], response: httpx.Response
) -> str:
    """What left the sidecar: the app's view of ``response``, the request log and stderr, the ledger,
    /metrics. The request's own log line is waited for (the request log is written in batches), so
    the log is searched with that line in it."""
    seen_by_app = seen(response)
    request_id = response.headers["x-request-id"]
    ledger = json.dumps(ledger_entries(sidecar))
    metrics = httpx.get(f"{sidecar.ops_url}/metrics", timeout=5).text
    out: list[str] = []
    err: list[str] = []

    def logged() -> bool:
        got = capfd.readouterr()
        out.append(got.out)
        err.append(got.err)
        lines = [line for line in "".join(out).splitlines() if line.startswith("{")]
        return any(json.loads(line)["requestId"] == request_id for line in lines)

    wait_until(logged)
    return "\n".join([seen_by_app, *out, *err, ledger, metrics])


def request_log(capfd: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    out = capfd.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def chat(sidecar: SidecarThread, model: str, *, stream: bool) -> httpx.Response:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 20,
        "stream": stream,
    }
    return httpx.post(f"{sidecar.base_url}/chat/completions", json=body, timeout=10)


def seen(response: httpx.Response) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return f"{response.status_code}\n{headers}\n{response.text}"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream-request"])
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_an_upstream_error_quoting_the_key_reaches_the_app_without_any_fragment_of_it(
    sidecar: SidecarThread, upstreams: Upstreams, capfd: pytest.CaptureFixture[str], case: Case, stream: bool
) -> None:
    upstreams.of(case.connection).script([Fault.status(case.status, body=case.body)])
    response = chat(sidecar, f"{case.connection}/{case.model}", stream=stream)

    credentials = case.status in (401, 403) or b"API_KEY_INVALID" in case.body
    assert response.status_code == (502 if credentials else case.status)  # a rejected key: generic 502
    error = response.json()["error"]
    assert error["message"]  # the client still learns what went wrong, in its own envelope
    assert upstreams.of(case.connection).requests  # the upstream did answer with the key inside
    assert leaked(everything_outside(sidecar, capfd, response), case.key) == []


def test_a_passed_through_4xx_keeps_its_message_around_the_redacted_key(
    sidecar: SidecarThread, upstreams: Upstreams
) -> None:
    upstreams.compat.script(
        [Fault.status(404, body=openai_error(f"API key '{P}' has no access to model local-model"))]
    )
    response = chat(sidecar, "compat/local-model", stream=False)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "API key '[redacted]' has no access to model local-model"


STREAM_CASES = {
    "openai error event with the key cut": ("openai", "gpt-4o-mini", K, f"Incorrect API key provided: {K[3:]}"),
    "compatible error event with a key of no known shape": (
        "compat", "local-model", P, f"upstream auth for {P} failed mid-stream",
    ),
    "anthropic error event quoting a fragment": ("anthropic", CLAUDE, A, f"overloaded (key {A[4:20]})"),
    "gemini error event quoting the key": ("gemini", GEMINI, G, f"UNAVAILABLE for key {G}"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(STREAM_CASES.values()), ids=list(STREAM_CASES))
def test_an_error_event_inside_a_stream_reaches_the_app_without_any_fragment_of_the_key(
    sidecar: SidecarThread,
    upstreams: Upstreams,
    capfd: pytest.CaptureFixture[str],
    case: tuple[str, str, str, str],
) -> None:
    name, model, key, message = case
    upstreams.of(name).script([Fault.stream_error(after=3, message=message)])
    response = chat(sidecar, f"{name}/{model}", stream=True)

    assert response.status_code == 200  # the stream had begun: the error is an event in it
    assert '"error"' in response.text
    assert "[DONE]" not in response.text
    assert leaked(everything_outside(sidecar, capfd, response), key) == []


def test_an_anthropic_error_event_reaches_a_messages_client_scrubbed_and_still_an_error_event(
    sidecar: SidecarThread, upstreams: Upstreams, capfd: pytest.CaptureFixture[str]
) -> None:
    upstreams.anthropic.script([Fault.stream_error(after=3, message=f"overloaded for {A}; retry")])
    body = {"model": f"anthropic/{CLAUDE}", "max_tokens": 20, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    headers = {"anthropic-version": "2023-06-01"}
    response = httpx.post(f"{sidecar.base_url}/messages", json=body, headers=headers, timeout=10)

    assert response.status_code == 200
    events = [block for block in response.text.split("\n\n") if block.startswith("event: error")]
    assert events, response.text
    payload = json.loads(events[0].split("data: ", 1)[1])
    assert payload["type"] == "error"
    assert payload["error"]["message"] == "overloaded for [redacted]; retry"
    assert leaked(everything_outside(sidecar, capfd, response), A) == []


def test_the_request_log_and_ledger_record_the_refused_request_without_the_key(
    sidecar: SidecarThread, upstreams: Upstreams, capfd: pytest.CaptureFixture[str]
) -> None:
    upstreams.gemini.script(
        [Fault.status(400, body=gemini_error(400, "INVALID_ARGUMENT", f"bad key {G[4:]}"))]
    )
    response = chat(sidecar, f"gemini/{GEMINI}", stream=False)
    assert response.status_code == 400
    line = wait_until(lambda: [entry for entry in request_log(capfd) if entry["op"] == "chat"])[-1]
    assert line["status"] == 400
    assert leaked(json.dumps(line), G) == []
