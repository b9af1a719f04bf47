"""The verifier child (``python -m sluicegate_sidecar.verifier``): the serving sidecar checks every sealed
config in it. A good config loads through it; unchanged bytes start no child; an unchanged bad config
one child only; a child that dies, hangs or answers garbage is a clear rejection while the last good
config keeps serving and the watcher goes on; keys never reach its stderr or the sidecar's log."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sluicegate_contract.configdir import read_sealed, write_sealed
from sluicegate_sidecar.configload import dev_data_keys, public_keys_from
from sluicegate_sidecar.verifyproto import VerifyRequest, decode_reply, encode
from tests.sidecar.conftest import OPENAI_KEY
from tests.support.sidecar_harness import (
    SidecarThread,
    connection,
    metric_value,
    render_dir,
    tier,
    wait_until,
)

# Stands in for the verifier command: counts its runs, then does what the mode file says (``ok``: the
# real verifier).
WRAPPER = """
import os, runpy, signal, sys, time
mode_file, runs_file = sys.argv[1], sys.argv[2]
with open(runs_file, "a") as handle:
    handle.write(f"{os.getpid()}\\n")
mode = open(mode_file).read().strip()
if mode == "die":
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "hang":
    time.sleep(3600)
if mode == "garbage":
    sys.stdout.buffer.write(b"not the verifier's answer")
    sys.exit(0)
sys.argv = [sys.argv[0]]
runpy.run_module("sluicegate_sidecar.verifier", run_name="__main__")
"""


class Verifier:
    """The wrapped verifier command, its mode and its runs."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.script, self.mode_file, self.runs_file = (
            directory / "verifier.py",
            directory / "mode",
            directory / "runs",
        )
        self.script.write_text(WRAPPER)
        self.set("ok")

    @property
    def command(self) -> tuple[str, ...]:
        return (sys.executable, str(self.script), str(self.mode_file), str(self.runs_file))

    def set(self, mode: str) -> None:
        self.mode_file.write_text(mode)

    def pids(self) -> list[int]:
        return [int(x) for x in self.runs_file.read_text().split()] if self.runs_file.exists() else []


def resources(openai_up: Any, *, with_later: bool = False) -> list[Any]:
    objects: list[Any] = [
        connection("openai", "openai", ["gpt-4o-mini"], base_url=openai_up.base_url, key=OPENAI_KEY),
        tier("standard", 10, [("openai", "gpt-4o-mini")]),
    ]
    if with_later:
        objects.append(tier("later", 20, [("openai", "gpt-4o-mini")]))
    return objects


def chat(sidecar: SidecarThread, model: str = "tier:standard") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{sidecar.base_url}/chat/completions", json=body, timeout=10)


def readiness(sidecar: SidecarThread) -> dict[str, Any]:
    return dict(httpx.get(f"{sidecar.ops_url}/readyz", timeout=5).json())


def forged(config_dir: Path) -> tuple[bytes, bytes]:
    body, _ = read_sealed(config_dir)
    return body.replace(b'"serial":1', b'"serial":2', 1), base64.b64encode(
        Ed25519PrivateKey.generate().sign(body)
    )


def garbage(config_dir: Path) -> tuple[bytes, bytes]:
    return os.urandom(300), os.urandom(88)


@pytest.mark.parametrize("bad", [forged, garbage], ids=["forged-signature", "garbage"])
def test_unchanged_config_bytes_start_no_verifier_child_and_an_unchanged_bad_config_only_one(
    tmp_path: Path, openai_up, bad
) -> None:
    config_dir = render_dir(tmp_path / "cfg", resources(openai_up))
    verifier = Verifier(tmp_path / "verifier")
    with SidecarThread(config_dir, tmp_path / "ledger", poll_interval=0.05, verifier=verifier.command) as sc:
        assert chat(sc).status_code == 200  # the good config was loaded through the child
        assert len(verifier.pids()) == 1
        time.sleep(1.0)  # ~20 polls of the same bytes
        assert len(verifier.pids()) == 1

        write_sealed(config_dir, *bad(config_dir))
        wait_until(lambda: metric_value(sc, "sluicegate_config_rejected_total") == 1)
        assert len(verifier.pids()) == 2
        time.sleep(1.0)  # ~20 polls of the same bad bytes: refused, not checked again, counted once
        assert len(verifier.pids()) == 2
        assert metric_value(sc, "sluicegate_config_rejected_total") == 1
        assert chat(sc).status_code == 200 and metric_value(sc, "sluicegate_config_serial") == 1

        render_dir(config_dir, resources(openai_up, with_later=True), serial=3)
        wait_until(lambda: metric_value(sc, "sluicegate_config_serial") == 3)
        assert len(verifier.pids()) == 3
        assert chat(sc, "tier:later").status_code == 200


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("die", "the config verifier exited with code -9"),
        ("garbage", "the config verifier answered something unreadable"),
        ("hang", "the config verifier did not answer within 3 s"),
    ],
)
def test_a_verifier_child_that_dies_hangs_or_answers_garbage_is_a_rejection_and_the_watcher_goes_on(
    tmp_path: Path, openai_up, caplog: pytest.LogCaptureFixture, mode: str, said: str
) -> None:
    caplog.set_level(logging.INFO, logger="sluicegate.sidecar")
    config_dir = render_dir(tmp_path / "cfg", resources(openai_up))
    verifier = Verifier(tmp_path / "verifier")
    with SidecarThread(
        config_dir, tmp_path / "ledger", poll_interval=0.05, verifier=verifier.command, verify_timeout=3.0
    ) as sc:
        verifier.set(mode)
        render_dir(config_dir, resources(openai_up, with_later=True))  # serial 2
        wait_until(lambda: len(verifier.pids()) == 2)
        if mode == "hang":  # the watcher waits for the child off the request path: serving goes on
            started = time.monotonic()
            assert chat(sc).status_code == 200
            assert time.monotonic() - started < 2.0
        wait_until(
            lambda: metric_value(sc, "sluicegate_config_rejected_total", reason="verifier_failed") == 1,
            timeout=15,
        )
        assert said in readiness(sc)["lastRejection"]
        assert f"config refused (verifier_failed): {said}" in caplog.text
        assert metric_value(sc, "sluicegate_config_serial") == 1
        assert chat(sc).status_code == 200 and chat(sc, "tier:later").status_code == 404
        child = verifier.pids()[-1]
        wait_until(lambda: not Path(f"/proc/{child}").exists())  # killed and reaped, never left behind

        verifier.set("ok")
        render_dir(config_dir, resources(openai_up, with_later=True), serial=3)
        wait_until(lambda: metric_value(sc, "sluicegate_config_serial") == 3, timeout=15)
        assert chat(sc, "tier:later").status_code == 200
        assert readiness(sc)["configWatch"] == "ok"
    assert OPENAI_KEY not in caplog.text


def test_a_verifier_child_failure_at_start_is_tried_again_after_a_while_on_the_same_bytes_not_every_poll(
    tmp_path: Path, openai_up
) -> None:
    config_dir = render_dir(tmp_path / "cfg", resources(openai_up))
    verifier = Verifier(tmp_path / "verifier")
    verifier.set("die")
    with SidecarThread(config_dir, tmp_path / "ledger", poll_interval=0.05, verifier=verifier.command) as sc:
        assert "verifier_failed" in readiness(sc)["lastRejection"]
        assert chat(sc).status_code == 503
        verifier.set("ok")
        # the same bytes, checked again RETRY_SECONDS (10 s) later: not at each of the ~200 polls between
        wait_until(lambda: metric_value(sc, "sluicegate_config_serial") == 1, timeout=30)
        assert len(verifier.pids()) == 2
        assert chat(sc).status_code == 200 and readiness(sc)["lastRejection"] is None


def request_for(config_dir: Path, **changes: Any) -> VerifyRequest:
    body, signature = read_sealed(config_dir)
    fields: dict[str, Any] = {
        "body": body,
        "signature": signature,
        "public_keys": public_keys_from(config_dir, environ={}),
        "data_keys": dev_data_keys(config_dir),
        "namespace": "default",
        "now": datetime.now(UTC),
        **changes,
    }
    return VerifyRequest(**fields)


def run_child(data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sluicegate_sidecar.verifier"], input=data, capture_output=True, timeout=60
    )


def test_the_verifier_child_answers_the_opened_key_on_stdout_and_writes_nothing_on_stderr(
    tmp_path: Path, openai_up
) -> None:
    config_dir = render_dir(tmp_path / "cfg", resources(openai_up))
    done = run_child(encode(request_for(config_dir)))
    assert done.returncode == 0 and done.stderr == b""
    reply = decode_reply(done.stdout)
    assert reply.rejected is None and reply.keys == {"openai": OPENAI_KEY} and reply.unusable == {}

    wrong = run_child(encode(request_for(config_dir, data_keys={"dek-other": os.urandom(32)})))
    assert decode_reply(wrong.stdout).unusable == {"openai": "unknown_data_key"}


def test_a_verifier_child_that_fails_names_only_the_error_type_on_stderr_never_the_keys(
    tmp_path: Path, openai_up
) -> None:
    config_dir = render_dir(tmp_path / "cfg", resources(openai_up))
    request = request_for(config_dir, namespace=OPENAI_KEY)
    broken = encode(request)[:-1]  # cut short: not a request
    done = run_child(broken)
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode().splitlines() == ["sluicegate verifier: DecodeError"]
