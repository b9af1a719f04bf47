"""Run the real sidecar (uvicorn, both listeners) in a background thread for tests.

config = render_dir(tmp_path / "cfg", [connection(...), tier(...), budget(...)])
with SidecarThread(config, tmp_path / "ledger") as sc:
    OpenAI(base_url=sc.base_url, api_key="x").chat.completions.create(...)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from sluicegate_contract.configdir import write_sealed
from sluicegate_operator.connections import secrets_from_objects
from sluicegate_operator.render import render_namespace
from sluicegate_operator.render_cli import load_or_create_keys, previous_serial
from sluicegate_sidecar.attribution import PodIdentity
from sluicegate_sidecar.configload import dev_data_keys, public_keys_from
from sluicegate_sidecar.routing.health import HealthBook
from sluicegate_sidecar.runtime import Gateway, Settings
from sluicegate_sidecar.serve_cli import build_gateway
from sluicegate_sidecar.servers import ListenError, run_servers

API = "sluicegate.io/v1alpha1"


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports the kernel just had free: all held open at once, so two calls in a row
    can never hand out the same port twice (the API's and the ops port colliding)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def connection(
    name: str,
    provider: str,
    models: list[dict[str, Any]] | list[str],
    *,
    base_url: str | None = None,
    key: str | None = "sk-test-key",
    **spec: Any,
) -> list[dict[str, Any]]:
    """A ProviderConnection (and its Secret when it needs a key)."""
    body: dict[str, Any] = {
        "provider": provider,
        "models": [m if isinstance(m, dict) else {"name": m} for m in models],
        **spec,
    }
    if base_url:
        body["baseURL"] = base_url
    objects: list[dict[str, Any]] = []
    if provider != "mock" and key is not None:
        body["apiKeySecretRef"] = {"name": f"{name}-key", "key": "apiKey"}
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"{name}-key"},
                "stringData": {"apiKey": key},
            }
        )
    objects.append(
        {"apiVersion": API, "kind": "ProviderConnection", "metadata": {"name": name}, "spec": body}
    )
    return objects


def tier(name: str, rank: int, candidates: list[tuple[str, str]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "RoutingTier",
        "metadata": {"name": name},
        "spec": {"rank": rank, "candidates": [{"connection": c, "model": m} for c, m in candidates], **spec},
    }


def budget(name: str, amount_usd: float, window: str = "day", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "BudgetPolicy",
        "metadata": {"name": name},
        "spec": {"limits": [{"window": window, "amountUSD": amount_usd}], **spec},
    }


def priced(
    name: str, input_per_mtok: float = 1.0, output_per_mtok: float = 2.0, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "pricing": {"inputPerMTok": input_per_mtok, "outputPerMTok": output_per_mtok},
        **extra,
    }


def render_dir(
    directory: Path, objects: list[Any], namespace: str = "default", *, serial: int | None = None
) -> Path:
    """Render resources into a sealed config directory (dev keys kept, serial raised on re-render
    unless ``serial`` is given)."""
    flat: list[dict[str, Any]] = []
    for item in objects:
        flat.extend(item if isinstance(item, list) else [item])
    signing, data = load_or_create_keys(directory)
    result = render_namespace(
        namespace,
        flat,
        secrets_from_objects(flat),
        data_key=data.active,
        signing_key=signing.active,
        serial=serial if serial is not None else previous_serial(directory) + 1,
        now=datetime.now(UTC),
    )
    write_sealed(directory, result.config_json, result.config_sig)
    return directory


ClientT = TypeVar("ClientT")


class SidecarThread:
    def __init__(
        self,
        config_dir: Path,
        ledger_dir: Path,
        *,
        pod: PodIdentity | None = None,
        poll_interval: float = 0.05,
        health: HealthBook | None = None,
        data_keys: Callable[[], Mapping[str, bytes]] | None = None,
        refresh_keys: Callable[[], Awaitable[bool]] | None = None,
        **settings: Any,
    ) -> None:
        self._clients: list[Any] = []
        self.config_dir = config_dir
        self.health = health  # None: the gateway's default HealthBook
        self.data_keys = data_keys  # None: the dev data keys beside the config, read at start
        self.refresh_keys = refresh_keys  # the key service's refetch, on an unknown data key id
        self.ledger_dir = ledger_dir
        self.pod = pod or PodIdentity(namespace="default", workload="checkout", service_account="checkout")
        self.settings = Settings(config_dir=config_dir, poll_interval=poll_interval, **settings)
        self.port, self.ops_port = free_ports(2)
        self.gateway: Gateway | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            dev_keys = dev_data_keys(self.config_dir)
            data_keys = self.data_keys or (lambda: dev_keys)
            self.gateway = build_gateway(
                self.settings,
                self.ledger_dir,
                pod=self.pod,
                public_keys=public_keys_from(self.config_dir, environ={}),
                data_keys=data_keys,
                refresh_keys=self.refresh_keys,
            )
            if self.health is not None:
                self.gateway.health = self.health
            await run_servers(self.gateway, self.port, self.ops_port, stop=self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by start()/stop()
            self._error = exc

    def start(self) -> SidecarThread:
        for _ in range(2):
            try:
                return self._start_once()
            except ListenError:  # a port free_ports() chose was taken meanwhile: nothing was left open
                self._thread.join(timeout=15)
                self.port, self.ops_port = free_ports(2)
                self._error, self._loop, self._stop = None, None, None
                self._thread = threading.Thread(target=self._run, daemon=True)
        return self._start_once()

    def _start_once(self) -> SidecarThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._error is not None:
                raise self._error
            try:
                httpx.get(f"{self.ops_url}/healthz", timeout=0.5)
                httpx.get(f"{self.root_url}/v1/models", timeout=0.5)
                return self
            except httpx.HTTPError:
                time.sleep(0.02)
        raise RuntimeError("sidecar did not start")

    def keep(self, client: ClientT) -> ClientT:
        """An SDK client a test made for this sidecar, closed when the sidecar stops: a client left to
        the garbage collector closes its pooled socket during some later test (a ResourceWarning)."""
        self._clients.append(client)
        return client

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        # A drain may take its whole deadline: a sidecar still running after it (and a margin) is a
        # failure here, never a thread left serving (and leaking sockets) into the tests that follow.
        self._thread.join(timeout=self.settings.drain_seconds + 15)
        if self._thread.is_alive():
            raise RuntimeError("sidecar did not stop")
        if self._error is not None:
            raise self._error

    def run_sync(self, coro: Any) -> Any:
        """Run a coroutine on the sidecar's loop (e.g. ledger flush) and wait for it."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def __enter__(self) -> SidecarThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- assertions' helpers (shared by tests/sidecar) ------------------------------------------------


def wait_until(condition: Any, timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``condition()`` until it returns something truthy (returned), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def ledger_entries(sidecar: SidecarThread) -> list[dict[str, Any]]:
    """Every ledger line written so far, after flushing the sidecar's pending writes."""
    import json

    assert sidecar.gateway is not None
    sidecar.run_sync(_settled(sidecar.gateway))
    lines: list[dict[str, Any]] = []
    for path in sorted(sidecar.ledger_dir.glob("ledger-*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line]
    return lines


async def _settled(gateway: Gateway) -> None:
    """Wait for detached ledger appends (spawned after responses), then flush them to disk."""
    while gateway._tasks:
        await asyncio.gather(*list(gateway._tasks), return_exceptions=True)
    await gateway.ledger.flush()


def metric_samples(sidecar: SidecarThread, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample named ``name`` on GET /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{sidecar.ops_url}/metrics", timeout=5).text
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def metric_value(sidecar: SidecarThread, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels`` (0 when none)."""
    return sum(
        value
        for found, value in metric_samples(sidecar, name)
        if all(found.get(k) == v for k, v in labels.items())
    )


def genai_micro_usd(usage: Any, model: str, provider: str) -> int:
    """genai-prices' price for a ``FakeUsage``, in micro-USD rounded up (as the sidecar charges)."""
    from genai_prices import calc_price

    price = calc_price(usage.as_genai_usage(), model, provider_id=provider).total_price
    return int((price * 1_000_000).to_integral_value(rounding="ROUND_CEILING"))


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Poll ``predicate()`` until it returns something truthy (returned) or ``timeout`` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def ledger_lines(directory: Path) -> list[dict[str, Any]]:
    """Every ledger entry in ``directory`` as a dict, in chain order."""
    import json

    lines: list[dict[str, Any]] = []
    for path in sorted(directory.glob("ledger-*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line]
    return lines


def prompt_of(tokens: int) -> list[dict[str, str]]:
    """A one-message chat prompt the sidecar estimates at exactly ``tokens`` tokens (at least 9):
    what ``auto`` and the context-window check see."""
    from sluicegate_sidecar.tokens import estimate_prompt_tokens

    for length in range(tokens * 4):
        messages = [{"role": "user", "content": "x" * length}]
        if estimate_prompt_tokens("chat", {"messages": messages}) == tokens:
            return messages
    raise ValueError(f"no one-message prompt is estimated at {tokens} tokens")


def reserved_prompt_of(tokens: int) -> list[dict[str, str]]:
    """A one-message chat prompt the sidecar's reservation counts as exactly ``tokens`` input
    tokens (its upper bound, ``bounds.request_bound``; at least 7)."""
    from sluicegate_sidecar.routing.bounds import request_bound

    for length in range(tokens):
        messages = [{"role": "user", "content": "x" * length}]
        if request_bound("chat", {"messages": messages}, 1, None).text_tokens == tokens:
            return messages
    raise ValueError(f"no one-message prompt is bounded at {tokens} tokens")
