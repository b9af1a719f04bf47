"""The key service's reply: one namespace's data keys, as the operator sends them and the sidecar reads them.

``POST /v1/keys`` with the projected ServiceAccount token answers this struct as JSON; keys are
standard base64. A reply missing a field or with a bad key is unreadable, never half-used; fields a
newer operator adds are ignored, so sidecars keep working through an operator upgrade.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

import msgspec

KEYS_PATH = "/v1/keys"


class KeysReplyError(ValueError):
    """A reply that is not a KeysReply with base64 keys."""


class KeysReply(msgspec.Struct, frozen=True):
    namespace: str
    active: str  # the key id new ciphertexts use
    keys: dict[str, str]  # key id → base64 of the 32-byte data key


def encode_keys_reply(namespace: str, active: str, keys: Mapping[str, bytes]) -> bytes:
    reply = KeysReply(namespace, active, {kid: base64.b64encode(key).decode() for kid, key in keys.items()})
    return msgspec.json.encode(reply)


def decode_keys_reply(data: bytes) -> tuple[KeysReply, dict[str, bytes]]:
    """The reply and its keys decoded; raises ``KeysReplyError``."""
    try:
        reply = msgspec.json.decode(data, type=KeysReply)
        keys = {kid: base64.b64decode(text, validate=True) for kid, text in reply.keys.items()}
    except (msgspec.DecodeError, binascii.Error):
        raise KeysReplyError("key service sent an unreadable reply") from None
    return reply, keys
