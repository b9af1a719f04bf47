"""``sluicegate config verify|show``: check a sealed config directory the way the sidecar would (in the
same verifier child)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from sluicegate_contract.rawkeys import (
    ConfigRejected,
    KeyringError,
    decode_data_ring,
    decode_public_key_bytes,
)

from .configload import dev_data_keys, load_config, public_keys_from


def _keys(args: argparse.Namespace, directory: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    public = (
        decode_public_key_bytes(Path(args.public_keys).read_bytes())
        if args.public_keys
        else public_keys_from(directory)
    )
    data = (
        dict(decode_data_ring(Path(args.data_keys).read_bytes()).keys)
        if args.data_keys
        else dev_data_keys(directory)
    )
    return public, data


def _redacted(directory: Path, args: argparse.Namespace) -> dict[str, Any]:
    public, data = _keys(args, directory)
    loaded = load_config(directory, public, data, namespace=args.namespace, now=datetime.now(UTC))
    doc: dict[str, Any] = msgspec.to_builtins(loaded.config)
    for provider in doc.get("providers", []):
        sealed = provider.get("apiKey")
        if sealed:
            provider["apiKey"] = f"<sealed: data key {sealed['kid']}, redacted>"
    return doc


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sluicegate config", description="Inspect a sealed config directory."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    for name, text in (
        ("verify", "verify signature, schema, validity and keys"),
        ("show", "print it, keys redacted"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("directory")
        p.add_argument(
            "--public-keys", help="JSON {kid: base64 public key} (default: DIR/keys/ or the env var)"
        )
        p.add_argument("--data-keys", help="data key ring JSON (default: DIR/keys/data-keys.json)")
        p.add_argument("--namespace", help="refuse a config for another namespace")
    args = parser.parse_args(argv)
    directory = Path(args.directory)
    try:
        if args.action == "show":
            sys.stdout.write(
                msgspec.json.format(msgspec.json.encode(_redacted(directory, args)), indent=2).decode()
            )
            sys.stdout.write("\n")
            return 0
        public, data = _keys(args, directory)
        loaded = load_config(directory, public, data, namespace=args.namespace, now=datetime.now(UTC))
    except ConfigRejected as exc:
        print(f"config rejected: {exc.reason}: {exc.detail}", file=sys.stderr)
        return 1
    except (KeyringError, OSError) as exc:
        print(f"sluicegate config: {exc}", file=sys.stderr)
        return 1
    c = loaded.config
    if loaded.unusable:
        for name, reason in sorted(loaded.unusable.items()):
            print(f"connection {name}: key unusable ({reason})", file=sys.stderr)
        print(f"config serial {c.serial} verifies, but {len(loaded.unusable)} connection key(s) do not open")
        return 1
    print(
        f"ok: namespace {c.namespace}, serial {c.serial}, signed by {c.signing_key_id}, "
        f"{len(c.providers)} connections, {len(c.tiers)} tiers, {len(c.budgets)} budgets, "
        f"valid until {c.not_after}"
    )
    return 0
