"""``sluicegate render``: CR and Secret YAML files → a sealed config directory, offline.

Dev signing and data keys are generated into ``DIR/keys/`` when absent and kept on later renders.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import yaml

from sluicegate_contract.configdir import (
    DATA_RING_FILE,
    KEYS_DIR,
    PUBLIC_KEYS_FILE,
    SIGNING_RING_FILE,
    read_sealed,
    write_private,
    write_sealed,
)
from sluicegate_contract.keyring import (
    DataRing,
    KeyringError,
    SigningRing,
    decode_data_ring,
    decode_signing_ring,
    encode_data_ring,
    encode_public_keys,
    encode_signing_ring,
    new_data_ring,
    new_signing_ring,
)

from .connections import secrets_from_objects
from .crparse import KINDS, ResourceError, meta_of
from .render import RenderError, render_namespace


class InputError(Exception):
    """Input files that cannot be read as Kubernetes objects."""


def load_objects(paths: Sequence[str]) -> list[dict[str, Any]]:
    """YAML documents from files, or from the *.yaml/*.yml files directly in a folder (like kubectl -f)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{raw}: no such file or folder")
    objects: list[dict[str, Any]] = []
    for file in files:
        try:
            docs = list(yaml.safe_load_all(file.read_text(encoding="utf-8")))
        except yaml.YAMLError as exc:
            raise InputError(f"{file}: not valid YAML ({exc})") from None
        for doc in docs:
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc:
                raise InputError(f"{file}: a document is not a Kubernetes object")
            if doc["kind"] in (*KINDS, "Secret"):
                objects.append(doc)
    return objects


def namespace_of(objects: Sequence[Mapping[str, Any]], override: str | None) -> str:
    if override:
        return override
    found = {meta_of(o).namespace for o in objects if o.get("kind") in KINDS} - {None}
    if len(found) > 1:
        raise InputError(f"resources span namespaces {sorted(n for n in found if n)}: pass --namespace")
    return next(iter(found), None) or "default"


def load_or_create_keys(directory: Path) -> tuple[SigningRing, DataRing]:
    keys = directory / KEYS_DIR
    signing_path, data_path = keys / SIGNING_RING_FILE, keys / DATA_RING_FILE
    signing = decode_signing_ring(signing_path.read_bytes()) if signing_path.exists() else None
    data = decode_data_ring(data_path.read_bytes()) if data_path.exists() else None
    if signing is None:
        signing = new_signing_ring()
        write_private(signing_path, encode_signing_ring(signing))
    if data is None:
        data = new_data_ring()
        write_private(data_path, encode_data_ring(data))
    (keys / PUBLIC_KEYS_FILE).write_bytes(encode_public_keys(signing.public_keys()))
    return signing, data


def previous_serial(directory: Path) -> int:
    try:
        body, _ = read_sealed(directory)
    except FileNotFoundError:
        return 0
    try:
        serial = msgspec.json.decode(body, type=dict[str, Any]).get("serial", 0)
    except msgspec.DecodeError:
        return 0
    return serial if isinstance(serial, int) else 0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sluicegate render",
        description="Render ProviderConnection, RoutingTier, BudgetPolicy and Secret YAML to sealed config.",
    )
    parser.add_argument(
        "-f", "--filename", action="append", required=True, help="file or folder (repeatable)"
    )
    parser.add_argument("-o", "--output", required=True, help="config directory to write")
    parser.add_argument(
        "--namespace", help="namespace to render (default: the resources' own, else 'default')"
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="serve every connection from the built-in mock provider (same models and prices, no keys)",
    )
    args = parser.parse_args(argv)
    out = Path(args.output)
    try:
        objects = load_objects(args.filename)
        namespace = namespace_of(objects, args.namespace)
        signing, data = load_or_create_keys(out)
        result = render_namespace(
            namespace,
            objects,
            secrets_from_objects(objects),
            data_key=data.active,
            signing_key=signing.active,
            serial=previous_serial(out) + 1,
            now=datetime.now(UTC),
            offline=args.offline,
        )
    except (InputError, ResourceError, RenderError, KeyringError, OSError) as exc:
        print(f"sluicegate render: {exc}", file=sys.stderr)
        return 1
    write_sealed(out, result.config_json, result.config_sig)
    broken = [r for r in result.reports.values() if not r.ready]
    for report in broken:
        print(f"warning: {report.kind}/{report.name}: {report.reason}: {report.message}", file=sys.stderr)
    for report in result.reports.values():
        for warning in report.warnings:
            print(f"warning: {report.kind}/{report.name}: {warning}", file=sys.stderr)
    c = result.config
    print(
        f"rendered namespace {namespace} serial {c.serial}: {len(c.providers)} connections, "
        f"{len(c.tiers)} tiers, {len(c.budgets)} budgets → {out}"
    )
    return 0
