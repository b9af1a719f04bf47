"""The sealed configs the authority serves: read from directories, signatures verified, newer serials
swapped in. A config that does not verify is refused and logged; the last good one keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sluicegate_contract.configdir import KEYS_DIR, PUBLIC_KEYS_FILE, read_sealed
from sluicegate_contract.keyring import decode_public_keys
from sluicegate_contract.schema import Config
from sluicegate_contract.sealing import ConfigRejected, verify_config

log = logging.getLogger("sluicegate.authority")


def public_keys_of(directories: Sequence[Path], keys_file: Path | None) -> dict[str, Ed25519PublicKey]:
    """Trusted signing keys: ``keys_file``, else the dev keys beside each config (``DIR/keys/``)."""
    files = [keys_file] if keys_file is not None else [d / KEYS_DIR / PUBLIC_KEYS_FILE for d in directories]
    keys: dict[str, Ed25519PublicKey] = {}
    for path in files:
        if path.exists():
            keys.update(decode_public_keys(path.read_bytes()))
    return keys


class ConfigSource(Protocol):
    """What the service reads configs from: directories (``ConfigSet``) or the operator's Secrets."""

    @property
    def configs(self) -> Mapping[str, Config]: ...

    def load(self, now: datetime) -> bool: ...


@dataclass
class ConfigSet:
    """The verified config of each namespace, by namespace; ``configs`` is replaced, never edited."""

    directories: Sequence[Path]
    public_keys: Mapping[str, Ed25519PublicKey]
    configs: Mapping[str, Config] = field(default_factory=dict)
    _refused: dict[Path, str] = field(default_factory=dict)
    _serials: dict[Path, int] = field(default_factory=dict)  # the serial served from each directory

    def load(self, now: datetime) -> bool:
        """Read every directory; True when a namespace's config changed."""
        configs = dict(self.configs)
        changed = False
        for directory in self.directories:
            try:
                body, signature = read_sealed(directory)
                config = verify_config(
                    body,
                    signature,
                    self.public_keys,
                    namespace=None,
                    now=now,
                    min_serial=self._serials.get(directory, 0),
                )
            except ConfigRejected as exc:
                if exc.reason != "rollback" and self._refused.get(directory) != str(exc):
                    log.warning("config in %s refused (%s): %s", directory, exc.reason, exc.detail)
                    self._refused[directory] = str(exc)
                continue
            except OSError as exc:
                if self._refused.get(directory) != str(exc):
                    log.warning("config in %s unreadable: %s", directory, exc)
                    self._refused[directory] = str(exc)
                continue
            self._refused.pop(directory, None)
            self._serials[directory] = config.serial
            configs[config.namespace] = config
            changed = True
            log.info("serving budgets of namespace %s at serial %s", config.namespace, config.serial)
        if changed:
            self.configs = configs
        return changed
