"""fault 33: a validly signed config carrying a value the sidecar cannot use (an unknown timezone, an
alias colliding with a model, a price too large to compute with) — sealed by hand with the dev keys,
bypassing render, which refuses these — is a rejection like a bad signature: the last good config
keeps serving, the rejection is counted and named in /readyz, and the watcher lives on to load the
next good config. At startup it neither crashes the sidecar nor makes it ready."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from sluicegate_contract.configdir import read_sealed, write_sealed
from sluicegate_contract.schema import Config, Model, ModelPrice, Rates
from sluicegate_contract.sealing import seal_config
from sluicegate_operator.render_cli import load_or_create_keys
from sluicegate_sidecar.configload import dev_data_keys
from tests.sidecar.conftest import OPENAI_KEY
from tests.support.fakes import FakeOpenAI
from tests.support.sidecar_harness import (
    SidecarThread,
    budget,
    connection,
    metric_value,
    render_dir,
    tier,
    wait_until,
)

POLL = 0.05


def resources(openai_up: FakeOpenAI, *, with_later: bool = False) -> list[Any]:
    objects: list[Any] = [
        connection(
            "openai", "openai", ["gpt-4o-mini", "gpt-4o"], base_url=openai_up.base_url, key=OPENAI_KEY
        ),
        tier("standard", 10, [("openai", "gpt-4o-mini")]),
        budget("daily", 5.0),
    ]
    if with_later:
        objects.append(tier("later", 20, [("openai", "gpt-4o-mini")]))
    return objects


def on_mars(config: Config) -> Config:
    budget = config.budgets[0]
    limit = msgspec.structs.replace(budget.limits[0], timezone="Mars/Olympus")
    return msgspec.structs.replace(config, budgets=(msgspec.structs.replace(budget, limits=(limit,)),))


def _models(config: Config, change: Callable[[Model], Model]) -> Config:
    provider = config.providers[0]
    models = tuple(change(m) if m.name == "gpt-4o" else m for m in provider.models)
    return msgspec.structs.replace(config, providers=(msgspec.structs.replace(provider, models=models),))


def alias_colliding_with_a_model(config: Config) -> Config:
    return _models(config, lambda m: msgspec.structs.replace(m, alias="gpt-4o-mini"))


def price_overflowing(config: Config) -> Config:
    rates = Rates(input_per_mtok=10**30, output_per_mtok=10**30)
    return _models(
        config, lambda m: msgspec.structs.replace(m, price=ModelPrice(source="override", base=rates))
    )


UNUSABLE = [
    pytest.param(on_mars, "spec.limits[0].timezone", id="unknown-timezone"),
    pytest.param(alias_colliding_with_a_model, "spec.models[1].alias", id="alias-collides-with-a-model"),
    pytest.param(price_overflowing, "spec.models[1].pricing.inputPerMTok", id="price-overflow"),
]


def seal_by_hand(config_dir: Path, change: Callable[[Config], Config], serial: int) -> None:
    """The config now in ``config_dir``, changed and re-signed with the dev signing key (no render)."""
    signing, _ = load_or_create_keys(config_dir)
    current = msgspec.json.decode(read_sealed(config_dir)[0], type=Config)
    changed = msgspec.structs.replace(change(current), serial=serial)
    write_sealed(config_dir, *seal_config(changed, signing.active))


def chat(sidecar: SidecarThread, model: str = "tier:standard") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    return httpx.post(f"{sidecar.base_url}/chat/completions", json=body, timeout=10)


def readiness(sidecar: SidecarThread) -> httpx.Response:
    return httpx.get(f"{sidecar.ops_url}/readyz", timeout=5)


@pytest.mark.parametrize(("change", "field"), UNUSABLE)
def test_an_unusable_config_at_runtime_is_refused_the_last_good_one_serves_and_the_watcher_lives(
    tmp_path: Path, openai_up: FakeOpenAI, change: Callable[[Config], Config], field: str
) -> None:
    config_dir = render_dir(tmp_path / "cfg", resources(openai_up))
    with SidecarThread(config_dir, tmp_path / "ledger", poll_interval=POLL) as sc:
        assert chat(sc).status_code == 200
        seal_by_hand(config_dir, change, serial=2)

        wait_until(lambda: metric_value(sc, "sluicegate_config_rejected_total", reason="unusable") == 1)
        probe = readiness(sc)
        assert probe.status_code == 200, probe.text
        detail = probe.json()
        assert detail["configSerial"] == 1 and detail["configWatch"] == "ok"
        assert detail["lastRejection"].startswith("unusable: serial 2") and field in detail["lastRejection"]
        assert chat(sc).status_code == 200
        assert metric_value(sc, "sluicegate_config_serial") == 1

        render_dir(config_dir, resources(openai_up, with_later=True))  # serial 3, through render
        wait_until(lambda: metric_value(sc, "sluicegate_config_serial") == 3)
        assert chat(sc, "tier:later").status_code == 200
        assert readiness(sc).json()["lastRejection"] is None
        assert metric_value(sc, "sluicegate_config_rejected_total") == 1


@pytest.mark.parametrize(("change", "field"), UNUSABLE)
def test_an_unusable_config_at_startup_after_a_good_one_does_not_crash_and_is_refused_until_a_good_one_comes(
    tmp_path: Path, openai_up: FakeOpenAI, change: Callable[[Config], Config], field: str
) -> None:
    config_dir = render_dir(tmp_path / "cfg", resources(openai_up))
    ledger = tmp_path / "ledger"
    with SidecarThread(config_dir, ledger, poll_interval=POLL) as sc:
        assert chat(sc).status_code == 200
    seal_by_hand(config_dir, change, serial=2)  # arrives while the sidecar is down

    with SidecarThread(config_dir, ledger, poll_interval=POLL) as sc:
        assert httpx.get(f"{sc.ops_url}/healthz", timeout=5).status_code == 200
        probe = readiness(sc)
        assert probe.status_code == 503
        assert probe.json()["lastRejection"].startswith("unusable: serial 2") and field in probe.text
        assert chat(sc).json()["error"]["code"] == "not_ready"
        assert metric_value(sc, "sluicegate_config_rejected_total", reason="unusable") == 1

        render_dir(config_dir, resources(openai_up))  # serial 3
        wait_until(lambda: readiness(sc).status_code == 200)
        assert readiness(sc).json()["configSerial"] == 3
        assert chat(sc).status_code == 200


def test_a_failing_step_of_a_poll_never_stops_the_watcher_from_loading_later_configs(
    tmp_path: Path, openai_up: FakeOpenAI
) -> None:
    """A key service call that raises (here: every time) is logged and retried, never the end of the
    watcher that also loads configs, probes the ledger and refreshes keys."""
    config_dir = render_dir(tmp_path / "cfg", resources(openai_up))
    dev_keys = dict(dev_data_keys(config_dir))
    keys: dict[str, bytes] = {}  # the sidecar starts without the data key: its connection is unusable
    refreshes: list[int] = []

    async def refresh_that_raises() -> bool:
        refreshes.append(1)
        raise RuntimeError("key service answered something unexpected")

    with SidecarThread(
        config_dir,
        tmp_path / "ledger",
        poll_interval=POLL,
        data_keys=lambda: keys,
        refresh_keys=refresh_that_raises,
    ) as sc:
        wait_until(lambda: refreshes)
        assert readiness(sc).json()["unusableConnections"] == {"openai": "unknown_data_key"}

        keys.update(dev_keys)
        render_dir(config_dir, resources(openai_up, with_later=True))  # serial 2
        wait_until(lambda: metric_value(sc, "sluicegate_config_serial") == 2)
        assert chat(sc, "tier:later").status_code == 200
        assert readiness(sc).json()["configWatch"] == "ok"
