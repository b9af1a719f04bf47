"""What the config watcher knows without asking the verifier child again. Pure: takes time as an argument.

The watcher reads the config directory every poll. The same bytes as the config being served are not
newer (as a fresh check would say: ``rollback`` of the serial in use, not counted); the same bytes as
the last refused config get that verdict again, so a broken config does not start a child every poll.
A verdict that time can change (``not_yet_valid``) or that says nothing about the config (the child
failed: ``verifier_failed``) is checked again after ``RETRY_SECONDS``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sluicegate_contract.rawkeys import ConfigRejected

from .configload import LoadedConfig
from .serialstate import Accepted
from .verifyproto import VerifyRequest

RETRY_SECONDS = 10.0
_TRANSIENT = ("not_yet_valid", "verifier_failed")


def _digest(body: bytes, signature: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(body).digest() + signature).digest()


def refuse_rollback(loaded: LoadedConfig, accepted: Accepted | None) -> None:
    """Raise ``rollback`` for a config older than the one accepted before a restart (fault 34): only
    possible before the first load after a restart (later, the serial in use is above it anyway)."""
    serial = loaded.config.serial
    if accepted is not None and (
        serial < accepted.serial or (serial == accepted.serial and loaded.body_sha256 != accepted.sha256)
    ):
        raise ConfigRejected(
            "rollback", f"serial {serial} is older than serial {accepted.serial}, accepted before", serial
        )


@dataclass(frozen=True, slots=True)
class _Verdict:
    digest: bytes
    serial_in_use: int
    rejected: ConfigRejected
    until: float  # monotonic seconds; inf: for as long as these bytes stay


@dataclass
class ConfigCheck:
    public_keys: Mapping[str, bytes]
    namespace: str | None
    _bad: _Verdict | None = None

    def known(
        self, body: bytes, signature: bytes, served: LoadedConfig | None, mono: float
    ) -> ConfigRejected | None:
        """The verdict on these bytes when it is already known, else None (the child must check them)."""
        current = served.config.serial if served is not None else 0
        if served is not None and served.body and (body, signature) == (served.body, served.signature):
            return ConfigRejected(
                "rollback", f"serial {current} is not newer than the serial in use ({current})", current
            )
        bad = self._bad
        if (
            bad is not None
            and bad.serial_in_use == current
            and mono < bad.until
            and bad.digest == _digest(body, signature)
        ):
            return bad.rejected
        return None

    def remember(
        self, body: bytes, signature: bytes, current: int, rejected: ConfigRejected, mono: float
    ) -> None:
        until = mono + RETRY_SECONDS if rejected.reason in _TRANSIENT else math.inf
        self._bad = _Verdict(_digest(body, signature), current, rejected, until)

    def request(
        self,
        body: bytes,
        signature: bytes,
        data_keys: Mapping[str, bytes],
        now: datetime,
        current: int,
        *,
        verify: bool = True,
    ) -> VerifyRequest:
        return VerifyRequest(
            body=body,
            signature=signature,
            public_keys=dict(self.public_keys),
            data_keys=dict(data_keys),
            namespace=self.namespace,
            now=now,
            min_serial=current,
            verify=verify,
        )
