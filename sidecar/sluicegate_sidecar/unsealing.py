"""The verifier child's work: verify a sealed config and open its provider keys. Pure.

Runs only in ``python -m sluicegate_sidecar.verifier`` (and offline commands): it imports
``cryptography``, which the serving process never loads (import-linter contract in pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from sluicegate_contract.schema import Config
from sluicegate_contract.sealing import (
    ConfigRejected,
    KeyUnsealError,
    load_public_key,
    unseal_key,
    verify_config,
)
from sluicegate_contract.usable import config_problems

from .verifyproto import Rejection, VerifyReply, VerifyRequest


def open_keys(config: Config, data_keys: Mapping[str, bytes]) -> tuple[dict[str, str], dict[str, str]]:
    """Each connection's opened key, and why the others are unusable (fault 15: only that one)."""
    keys: dict[str, str] = {}
    unusable: dict[str, str] = {}
    for provider in config.providers:
        if provider.api_key is not None:
            try:
                keys[provider.name] = unseal_key(
                    provider.api_key, data_keys, config.namespace, provider.binding
                )
            except KeyUnsealError as exc:
                unusable[provider.name] = exc.reason
        elif provider.provider != "mock":
            unusable[provider.name] = "no_key"
    return keys, unusable


def checked_config(request: VerifyRequest) -> Config:
    """The config, verified (or, for ``verify=False``, decoded); raises ``ConfigRejected``."""
    if not request.verify:
        return msgspec.json.decode(request.body, type=Config)
    public = {kid: load_public_key(raw) for kid, raw in request.public_keys.items()}
    config = verify_config(
        request.body,
        request.signature,
        public,
        namespace=request.namespace,
        now=request.now,
        min_serial=request.min_serial,
    )
    problems = config_problems(config)
    if problems:
        detail = "; ".join(map(str, problems))
        raise ConfigRejected("unusable", f"serial {config.serial}: {detail}", config.serial)
    return config


def answer(request: VerifyRequest) -> VerifyReply:
    try:
        config = checked_config(request)
    except ConfigRejected as exc:
        return VerifyReply(rejected=Rejection(exc.reason, exc.detail, exc.serial))
    keys, unusable = open_keys(config, request.data_keys)
    return VerifyReply(keys=keys, unusable=unusable)
