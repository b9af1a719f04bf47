"""The operator-hosted authority's configs: the signed config Secrets, verified, newest serial kept,
a tampered one refused, a deleted one no longer served."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

from sluicegate_contract.configdir import KEYS_DIR, PUBLIC_KEYS_FILE, read_sealed
from sluicegate_operator.authority.hosted import SecretConfigs
from tests.support.sidecar_harness import budget, render_dir


def secret(directory: Path, namespace: str, *, tamper: bool = False) -> dict[str, object]:
    body, signature = read_sealed(directory)
    if tamper:
        body = body.replace(b'"team-cap"', b'"team-cXp"')
    data = {
        "config.json": base64.b64encode(body).decode(),
        "config.sig": base64.b64encode(signature).decode(),
    }
    return {"metadata": {"name": "sluicegate-config", "namespace": namespace}, "data": data}


def test_signed_config_secrets_are_served_a_tampered_one_refused_and_a_deleted_one_dropped(
    tmp_path: Path,
) -> None:
    a = render_dir(tmp_path / "a", [budget("team-cap", 1.0)], "team-a")
    b = render_dir(tmp_path / "b", [budget("team-cap", 1.0)], "team-b")
    keys = (a / KEYS_DIR / PUBLIC_KEYS_FILE).read_text()
    now = datetime.now(UTC)
    configs = SecretConfigs()
    assert configs.refresh([secret(a, "team-a"), secret(b, "team-b", tamper=True)], keys, now)
    assert set(configs.configs) == {"team-a"}  # team-b was signed with other keys and edited
    assert configs.configs["team-a"].budgets[0].name == "team-cap"
    assert not configs.refresh([secret(a, "team-a")], keys, now)  # same serial: nothing changed
    assert configs.refresh([], keys, now)
    assert configs.configs == {}
