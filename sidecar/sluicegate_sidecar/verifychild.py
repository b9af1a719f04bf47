"""Runs the verifier child (``python -m sluicegate_sidecar.verifier``) and reads its answer: the I/O shell
around ``verifyproto``.

A child that cannot start, dies, hangs past its deadline or answers something unreadable is a
``ConfigRejected("verifier_failed")``, never an exception of another kind: the caller treats it like
any bad config (the last good one keeps serving, the watcher goes on). The child's stderr is logged
only as its last line, cut short; the child writes nothing there but an error's type name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

import sluicegate_contract
import sluicegate_sidecar
from sluicegate_contract.rawkeys import ConfigRejected

from .verifyproto import VerifyReply, VerifyRequest, decode_reply, encode

VERIFIER: tuple[str, ...] = (sys.executable, "-m", "sluicegate_sidecar.verifier")
VERIFY_TIMEOUT_SECONDS = 30.0
STDERR_SHOWN = 200  # characters of the child's last stderr line in a rejection's detail


def child_env() -> dict[str, str]:
    """This process's environment, with the directories this code was loaded from first on the path:
    the child runs the same code as its parent however the parent was started."""
    roots = [
        str(Path(p.__file__ or "").resolve().parent.parent) for p in (sluicegate_contract, sluicegate_sidecar)
    ]
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys([*roots, *([path] if path else [])]))}


def _failed(detail: str) -> ConfigRejected:
    return ConfigRejected("verifier_failed", detail)


def _reply(returncode: int | None, stdout: bytes, stderr: bytes) -> VerifyReply:
    if returncode != 0:
        lines = stderr.decode("utf-8", "replace").strip().splitlines()
        said = f": {lines[-1][:STDERR_SHOWN]}" if lines else ""
        raise _failed(f"the config verifier exited with code {returncode}{said}")
    try:
        return decode_reply(stdout)
    except msgspec.DecodeError:
        raise _failed(f"the config verifier answered something unreadable ({len(stdout)} bytes)") from None


def run_verifier(request: VerifyRequest, command: Sequence[str], seconds: float) -> VerifyReply:
    """Blocking: for startup and the ``config`` command."""
    try:
        done = subprocess.run(
            list(command), input=encode(request), capture_output=True, timeout=seconds, env=child_env()
        )
    except subprocess.TimeoutExpired:
        raise _failed(f"the config verifier did not answer within {seconds:g} s") from None
    except OSError as exc:
        raise _failed(f"the config verifier could not start: {exc.strerror or exc}") from None
    return _reply(done.returncode, done.stdout, done.stderr)


async def run_verifier_async(request: VerifyRequest, command: Sequence[str], seconds: float) -> VerifyReply:
    """On the event loop, which keeps serving meanwhile: for the config watcher."""
    try:
        child = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env(),
        )
    except OSError as exc:
        raise _failed(f"the config verifier could not start: {exc.strerror or exc}") from None
    try:
        async with asyncio.timeout(seconds):
            stdout, stderr = await child.communicate(encode(request))
    except TimeoutError:
        raise _failed(f"the config verifier did not answer within {seconds:g} s") from None
    finally:
        if child.returncode is None:  # timed out or cancelled: never leave it running
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
    return _reply(child.returncode, stdout, stderr)
