"""Sealing round trip and every tamper the sidecar must refuse, each with its own reason."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from msgspec.structs import replace

from sluicegate_contract.keyring import (
    decode_data_ring,
    decode_public_keys,
    decode_signing_ring,
    encode_data_ring,
    encode_public_keys,
    encode_signing_ring,
    new_data_ring,
    new_signing_ring,
    rotate_signing_ring,
)
from sluicegate_contract.schema import SCHEMA_VERSION, Config, KeyBinding, Provider
from sluicegate_contract.sealing import (
    ConfigRejected,
    KeyUnsealError,
    canonical,
    generate_data_key,
    generate_signing_key,
    key_fingerprint,
    seal_config,
    seal_key,
    unseal_key,
    verify_config,
)
from sluicegate_contract.timestamps import format_time

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RAW_KEY = "sk-test-raw-provider-key-0123456789"


def make_config(
    signing_kid: str, *, namespace: str = "team-a", serial: int = 5, **overrides: object
) -> Config:
    data_key = overrides.pop("data_key", None) or generate_data_key()
    binding = KeyBinding(connection="openai", uid="uid-1", generation=1)
    provider = Provider(
        name="openai",
        provider="openai",
        binding=binding,
        api_key=seal_key(RAW_KEY, data_key, namespace, binding),  # type: ignore[arg-type]
    )
    config = Config(
        schema_version=SCHEMA_VERSION,
        namespace=namespace,
        serial=serial,
        issued_at=format_time(NOW),
        not_before=format_time(NOW),
        not_after=format_time(NOW + timedelta(days=30)),
        signing_key_id=signing_kid,
        price_catalog_version="test",
        content_hash="x",
        providers=(provider,),
    )
    return replace(config, **overrides)


def reject_reason(body: bytes, sig: bytes, keys: dict, **kwargs: object) -> str:
    with pytest.raises(ConfigRejected) as info:
        verify_config(body, sig, keys, **{"namespace": "team-a", "now": NOW, **kwargs})  # type: ignore[arg-type]
    return info.value.reason


@pytest.fixture
def signer():
    return generate_signing_key()


def test_sealed_config_round_trips_and_the_key_opens_only_with_its_binding(signer) -> None:
    data_key = generate_data_key()
    config = make_config(signer.kid, data_key=data_key)
    body, sig = seal_config(config, signer)
    got = verify_config(body, sig, {signer.kid: signer.public()}, namespace="team-a", now=NOW)
    assert got == config
    provider = got.providers[0]
    assert unseal_key(provider.api_key, {data_key.kid: data_key.key}, "team-a", provider.binding) == RAW_KEY
    assert RAW_KEY.encode() not in body


def test_config_json_is_canonical_sorted_and_compact(signer) -> None:
    body, _ = seal_config(make_config(signer.kid), signer)
    decoded = msgspec.json.decode(body)
    assert list(decoded) == sorted(decoded)
    assert b": " not in body and b", " not in body and b"\n" not in body
    assert canonical(decoded) == body


def test_a_flipped_byte_in_config_json_is_refused_as_bad_signature(signer) -> None:
    body, sig = seal_config(make_config(signer.kid), signer)
    index = body.index(b'"serial":5') + len(b'"serial":')
    tampered = body[:index] + b"9" + body[index + 1 :]
    assert reject_reason(tampered, sig, {signer.kid: signer.public()}) == "bad_signature"


def test_a_signature_from_another_config_is_refused(signer) -> None:
    body, _ = seal_config(make_config(signer.kid, serial=5), signer)
    _, other_sig = seal_config(make_config(signer.kid, serial=6), signer)
    assert reject_reason(body, other_sig, {signer.kid: signer.public()}) == "bad_signature"


def test_a_config_for_another_namespace_is_refused(signer) -> None:
    body, sig = seal_config(make_config(signer.kid, namespace="team-b"), signer)
    assert reject_reason(body, sig, {signer.kid: signer.public()}) == "wrong_namespace"


def test_an_older_or_equal_serial_is_refused_as_rollback(signer) -> None:
    body, sig = seal_config(make_config(signer.kid, serial=5), signer)
    assert reject_reason(body, sig, {signer.kid: signer.public()}, min_serial=5) == "rollback"
    assert reject_reason(body, sig, {signer.kid: signer.public()}, min_serial=9) == "rollback"


def test_an_expired_or_not_yet_valid_config_is_refused_beyond_the_clock_leeway(signer) -> None:
    body, sig = seal_config(make_config(signer.kid), signer)
    keys = {signer.kid: signer.public()}
    assert reject_reason(body, sig, keys, now=NOW + timedelta(days=31)) == "expired"
    assert reject_reason(body, sig, keys, now=NOW - timedelta(minutes=10)) == "not_yet_valid"
    # inside the leeway: accepted
    verify_config(body, sig, keys, namespace="team-a", now=NOW - timedelta(minutes=4))


def test_a_config_signed_by_an_unknown_key_is_refused(signer) -> None:
    stranger = generate_signing_key()
    body, sig = seal_config(make_config(stranger.kid), stranger)
    assert reject_reason(body, sig, {signer.kid: signer.public()}) == "unknown_signing_key"


def test_a_key_id_claimed_by_another_signer_is_refused(signer) -> None:
    impostor = generate_signing_key()
    config = make_config(signer.kid)
    body = canonical(config)
    sig = base64.b64encode(impostor.private.sign(body))
    assert reject_reason(body, sig, {signer.kid: signer.public()}) == "bad_signature"


def test_an_unknown_schema_version_is_refused_even_when_signed(signer) -> None:
    body, sig = seal_config(make_config(signer.kid, schema_version=99), signer)
    assert reject_reason(body, sig, {signer.kid: signer.public()}) == "unsupported_schema"


def test_corrupt_json_is_refused(signer) -> None:
    assert reject_reason(b'{"serial": ', b"AAAA", {signer.kid: signer.public()}) == "corrupt"


def test_a_ciphertext_moved_to_another_connection_or_namespace_does_not_open() -> None:
    data_key = generate_data_key()
    keys = {data_key.kid: data_key.key}
    binding = KeyBinding(connection="openai", uid="uid-1", generation=1)
    sealed = seal_key(RAW_KEY, data_key, "team-a", binding)
    for namespace, moved in (
        ("team-a", KeyBinding(connection="anthropic", uid="uid-1", generation=1)),
        ("team-a", KeyBinding(connection="openai", uid="uid-2", generation=1)),
        ("team-a", KeyBinding(connection="openai", uid="uid-1", generation=2)),
        ("team-b", binding),
    ):
        with pytest.raises(KeyUnsealError) as info:
            unseal_key(sealed, keys, namespace, moved)
        assert info.value.reason == "key_binding_mismatch"
        assert RAW_KEY not in str(info.value)


def test_a_ciphertext_under_an_unknown_data_key_is_reported_as_such() -> None:
    data_key = generate_data_key()
    binding = KeyBinding(connection="openai", uid="", generation=0)
    sealed = seal_key(RAW_KEY, data_key, "ns", binding)
    with pytest.raises(KeyUnsealError) as info:
        unseal_key(sealed, {}, "ns", binding)
    assert info.value.reason == "unknown_data_key"


def test_during_signing_key_rotation_old_and_new_keys_are_both_accepted() -> None:
    ring = new_signing_ring()
    rotated = rotate_signing_ring(ring)
    trusted = decode_public_keys(encode_public_keys(rotated.public_keys()))
    for key in (ring.active, rotated.active):
        body, sig = seal_config(make_config(key.kid), key)
        assert verify_config(body, sig, trusted, namespace="team-a", now=NOW).signing_key_id == key.kid


def test_key_rings_round_trip_through_their_json_documents() -> None:
    signing = rotate_signing_ring(new_signing_ring())
    again = decode_signing_ring(encode_signing_ring(signing))
    assert again.active.kid == signing.active.kid and set(again.keys) == set(signing.keys)
    data = new_data_ring()
    assert decode_data_ring(encode_data_ring(data)).keys == data.keys


def test_key_fingerprint_is_eight_hex_and_not_the_key() -> None:
    fp = key_fingerprint(RAW_KEY)
    assert len(fp) == 8 and int(fp, 16) >= 0 and fp not in RAW_KEY
