"""``sluicegate import portkey-config|litellm-config FILE``: print equivalent Sluicegate resources.

Reads one file, prints YAML (Secret stubs, ProviderConnections, RoutingTiers, BudgetPolicies) with
what could not be carried over; never prints a key value from the source.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from .importers.drafts import ImportResult
from .importers.emit import to_yaml
from .importers.litellm import import_litellm
from .importers.portkey import import_portkey
from .prices import catalog_price


class ImportFailed(Exception):
    """The input cannot be imported; the message is one actionable line."""


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImportFailed(f"{path}: cannot read it ({exc.strerror or exc})") from None


def load_portkey(path: Path) -> Mapping[str, Any]:
    """A Portkey config: the JSON you paste into the Portkey UI, or the configs API's reply."""
    try:
        data = json.loads(_read(path))
    except json.JSONDecodeError as exc:
        raise ImportFailed(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(data, Mapping) and isinstance(data.get("data"), Mapping) and "config" in data["data"]:
        data = data["data"]["config"]  # GET /configs/{slug} wraps it as {"success", "data": {"config"}}
    if isinstance(data, str):
        raise ImportFailed(
            f"{path}: holds a config id ({data[:40]!r}); export the config's JSON from Portkey"
        )
    if not isinstance(data, Mapping):
        raise ImportFailed(f"{path}: a Portkey config is a JSON object")
    return data


def load_litellm(path: Path) -> Mapping[str, Any]:
    try:
        data = yaml.safe_load(_read(path))
    except yaml.YAMLError as exc:
        raise ImportFailed(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("model_list"), list):
        raise ImportFailed(f"{path}: a LiteLLM proxy config needs a model_list")
    return data


def unpriced_notes(result: ImportResult, now: datetime) -> list[str]:
    """Models with neither a price override nor a catalog price (refused under a budget)."""
    notes: list[str] = []
    for obj in result.objects:
        if obj.get("kind") != "ProviderConnection":
            continue
        spec = obj["spec"]
        for model in spec["models"]:
            if "pricing" not in model and catalog_price(spec["provider"], model["name"], now) is None:
                notes.append(
                    f"{obj['metadata']['name']}/{model['name']} has no catalog price: add "
                    "spec.models[].pricing, or a BudgetPolicy refuses it unless allowUnpriced."
                )
    return notes


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sluicegate import",
        description="Translate a Portkey config or a LiteLLM proxy config into Sluicegate resources (YAML).",
    )
    parser.add_argument("source", choices=["portkey-config", "litellm-config"], help="what FILE is")
    parser.add_argument("file", metavar="FILE", help="Portkey config JSON, or LiteLLM config.yaml")
    parser.add_argument("--namespace", help="set metadata.namespace on every resource")
    parser.add_argument("--tier", help="portkey-config: name of the RoutingTier (default: FILE's name)")
    parser.add_argument("--model", help="portkey-config: model for targets without override_params.model")
    args = parser.parse_args(argv)
    path = Path(args.file)
    command = f"sluicegate import {args.source} {path.name}"
    try:
        if args.source == "portkey-config":
            result = import_portkey(
                load_portkey(path),
                tier=args.tier or path.stem,
                namespace=args.namespace,
                default_model=args.model,
            )
        else:
            result = import_litellm(load_litellm(path), namespace=args.namespace)
    except ImportFailed as exc:
        print(f"sluicegate import: {exc}", file=sys.stderr)
        return 1
    result = ImportResult(
        result.source,
        result.resources,
        result.dropped,
        result.todo + tuple(unpriced_notes(result, datetime.now(UTC))),
    )
    kinds = [obj["kind"] for obj in result.objects]
    if not any(kind in ("ProviderConnection", "RoutingTier") for kind in kinds):
        print(to_yaml(result, command), end="")
        print(
            f"sluicegate import: nothing in {path} could be carried over (see the list above)",
            file=sys.stderr,
        )
        return 1
    print(to_yaml(result, command), end="")
    print(
        f"sluicegate import: {kinds.count('ProviderConnection')} connections, {kinds.count('RoutingTier')} "
        f"tiers, {kinds.count('BudgetPolicy')} budgets, {len(result.dropped)} items not carried over "
        "(listed at the top)",
        file=sys.stderr,
    )
    return 0
