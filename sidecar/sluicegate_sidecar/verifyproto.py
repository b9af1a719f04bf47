"""What the serving sidecar and its verifier child say to each other, as msgpack over a pipe. Pure.

The serving process does not load ``cryptography`` (9 MiB of resident memory, used once per config):
a short-lived child (``python -m sluicegate_sidecar.verifier``) gets the sealed bytes and the keys on
stdin, checks the signature and opens the provider keys, answers on stdout and exits.
"""

from __future__ import annotations

from datetime import datetime

import msgspec


class VerifyRequest(msgspec.Struct, frozen=True, kw_only=True):
    body: bytes  # config.json as read
    signature: bytes  # config.sig as read
    public_keys: dict[str, bytes]  # trusted signing keys, raw Ed25519 (32 bytes)
    data_keys: dict[str, bytes]  # key id → AES-256 data key
    namespace: str | None
    now: datetime
    min_serial: int = 0
    # False: ``body`` was verified before (the config being served); only open its keys again
    verify: bool = True


class Rejection(msgspec.Struct, frozen=True):
    reason: str
    detail: str
    serial: int | None = None


class VerifyReply(msgspec.Struct, frozen=True, kw_only=True):
    rejected: Rejection | None = None
    keys: dict[str, str] = {}  # connection → its opened provider key
    unusable: dict[str, str] = {}  # connection → why its key does not open


def encode(message: VerifyRequest | VerifyReply) -> bytes:
    return msgspec.msgpack.encode(message)


def decode_request(data: bytes) -> VerifyRequest:
    return msgspec.msgpack.decode(data, type=VerifyRequest)


def decode_reply(data: bytes) -> VerifyReply:
    """The child's answer; raises ``msgspec.DecodeError`` when it is not one."""
    return msgspec.msgpack.decode(data, type=VerifyReply)
