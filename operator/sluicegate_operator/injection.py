"""Sidecar injection: a Pod (as in an AdmissionReview) → the JSON Patch ops that add the native sidecar.

Pure: no kopf, no Kubernetes client. Idempotent: a Pod already injected (annotation or container
present) or without the ``sluicegate.io/inject: "true"`` label yields no ops.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sluicegate_contract import sidecarpod as pod_contract
from sluicegate_contract.sidecarpod import CONFIG_DIR, LEDGER_DIR, OPS_PORT, PODINFO_DIR, TOKEN_DIR

INJECT_LABEL = "sluicegate.io/inject"
INJECTED_BY = "sluicegate.io/injected-by"
PORT_ANNOTATION = "sluicegate.io/port"
CPU_ANNOTATION = "sluicegate.io/cpu"
MEMORY_ANNOTATION = "sluicegate.io/memory"
TIER_ANNOTATION = "sluicegate.io/default-tier"

SIDECAR_NAME = "sluicegate-sidecar"
SIDECAR_RESOURCES_ENV = "SLUICEGATE_SIDECAR_RESOURCES"  # the chart's sidecar.resources, as JSON
CONFIG_VOLUME = "sluicegate-config"
TOKEN_VOLUME = "sluicegate-token"  # noqa: S105
PODINFO_VOLUME = "sluicegate-podinfo"
LEDGER_VOLUME = "sluicegate-ledger"
PLACEHOLDER_KEY = "sluicegate-placeholder"

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class InjectionError(Exception):
    """The Pod asks for injection but cannot get it; the message says what to change."""


@dataclass(frozen=True, slots=True)
class SidecarResources:
    """The sidecar container's default requests and limits; a Pod's cpu/memory annotations override them."""

    requests: Mapping[str, str] = field(default_factory=lambda: {"cpu": "100m", "memory": "128Mi"})
    limits: Mapping[str, str] = field(default_factory=lambda: {"memory": "128Mi"})


def sidecar_resources(environ: Mapping[str, str]) -> SidecarResources:
    """The defaults the chart passes in ``SLUICEGATE_SIDECAR_RESOURCES`` (unset: the built-in ones).

    Raises ``InjectionError`` naming the variable when its value is not ``{requests, limits}`` of
    cpu/memory quantities, so a bad chart value stops the operator at startup, not a Pod at admission.
    """
    text = environ.get(SIDECAR_RESOURCES_ENV, "").strip()
    if not text:
        return SidecarResources()
    try:
        raw = json.loads(text)
    except ValueError:
        raise InjectionError(f"{SIDECAR_RESOURCES_ENV} is not JSON") from None
    if not isinstance(raw, dict) or not set(raw) <= {"requests", "limits"}:
        raise InjectionError(f"{SIDECAR_RESOURCES_ENV} must be an object with requests and limits")
    parts: dict[str, dict[str, str]] = {}
    for part in ("requests", "limits"):
        values = raw.get(part) or {}
        if not isinstance(values, dict) or not set(values) <= {"cpu", "memory"}:
            raise InjectionError(f"{SIDECAR_RESOURCES_ENV}: {part} may hold cpu and memory only")
        for name, value in values.items():
            if not isinstance(value, str | int) or not _QUANTITY.match(str(value)):
                raise InjectionError(
                    f"{SIDECAR_RESOURCES_ENV}: {part}.{name}={value!r} is not a quantity like 200m or 256Mi"
                )
        parts[part] = {name: str(value) for name, value in values.items()}
    return SidecarResources(requests=parts["requests"], limits=parts["limits"])


@dataclass(frozen=True, slots=True)
class InjectionSettings:
    image: str
    version: str
    key_service_url: str = "https://sluicegate-keys.sluicegate-system.svc:443"
    api_port: int = pod_contract.API_PORT
    resources: SidecarResources = field(default_factory=SidecarResources)
    token_audience: str = pod_contract.TOKEN_AUDIENCE
    token_seconds: int = 3600
    image_pull_policy: str | None = None
    key_service_ca: str | None = None  # PEM of the CA that signed the key service's certificate
    budget_authority_url: str | None = None  # fleet mode: the sidecars' --budget-authority


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def wants_injection(pod: Mapping[str, Any]) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get(INJECT_LABEL) == "true"


def is_injected(pod: Mapping[str, Any]) -> bool:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    spec = pod.get("spec") or {}
    names = {c.get("name") for c in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]}
    return INJECTED_BY in annotations or SIDECAR_NAME in names


def _options(pod: Mapping[str, Any], settings: InjectionSettings) -> tuple[int, dict[str, Any], str | None]:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    raw_port = annotations.get(PORT_ANNOTATION, str(settings.api_port))
    try:
        port = int(raw_port)
    except ValueError:
        port = 0
    if not 1024 <= port <= 65535 or port == OPS_PORT:
        raise InjectionError(
            f"annotation {PORT_ANNOTATION}={raw_port!r} must be a port in 1024-65535 other than {OPS_PORT}"
        )
    requests, limits = dict(settings.resources.requests), dict(settings.resources.limits)
    for name in (CPU_ANNOTATION, MEMORY_ANNOTATION):
        value = annotations.get(name)
        if value is None:
            continue
        if not _QUANTITY.match(value):
            raise InjectionError(
                f"annotation {name}={value!r} is not a resource quantity such as 200m or 256Mi"
            )
        if name == CPU_ANNOTATION:
            requests["cpu"] = value
            if "cpu" in limits:
                limits["cpu"] = value
        else:  # the memory annotation is the request and the limit
            requests["memory"] = limits["memory"] = value
    tier = annotations.get(TIER_ANNOTATION)
    if tier is not None and not _DNS_LABEL.match(tier):
        raise InjectionError(f"annotation {TIER_ANNOTATION}={tier!r} must name a RoutingTier (a DNS label)")
    resources: dict[str, Any] = {"requests": requests}
    if limits:
        resources["limits"] = limits
    return port, resources, tier


def workload_name(pod: Mapping[str, Any]) -> str:
    """The owning workload: a ReplicaSet's Deployment, else the owner, else the Pod's own name."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    for owner in meta.get("ownerReferences") or ():
        name = str(owner.get("name") or "")
        template_hash = labels.get("pod-template-hash")
        if owner.get("kind") == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
            return name[: -len(template_hash) - 1]
        if owner.get("controller") and name:
            return name
    return str(meta.get("name") or str(meta.get("generateName") or "").rstrip("-"))


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def sidecar_container(
    pod: Mapping[str, Any], settings: InjectionSettings, public_keys_json: str
) -> dict[str, Any]:
    port, resources, tier = _options(pod, settings)
    env: list[dict[str, Any]] = [
        {"name": pod_contract.ENV_SIGNING_PUBLIC_KEYS, "value": public_keys_json},
        _field_env(pod_contract.ENV_POD_NAMESPACE, "metadata.namespace"),
        _field_env(pod_contract.ENV_POD_NAME, "metadata.name"),
        _field_env(pod_contract.ENV_SERVICE_ACCOUNT, "spec.serviceAccountName"),
        {"name": pod_contract.ENV_WORKLOAD, "value": workload_name(pod)},
        {"name": pod_contract.ENV_PODINFO_DIR, "value": PODINFO_DIR},
        {"name": pod_contract.ENV_API_PORT, "value": str(port)},
    ]
    if tier is not None:
        env.append({"name": pod_contract.ENV_DEFAULT_TIER, "value": tier})
    if settings.key_service_ca:
        env.append({"name": pod_contract.ENV_KEY_SERVICE_CA, "value": settings.key_service_ca})
    probe = {"httpGet": {"path": "/readyz", "port": OPS_PORT}}
    container: dict[str, Any] = {
        "name": SIDECAR_NAME,
        "image": settings.image,
        "restartPolicy": "Always",
        "command": [
            "sluicegate",
            "sidecar",
            "--config",
            CONFIG_DIR,
            "--ledger-dir",
            LEDGER_DIR,
            "--key-service",
            settings.key_service_url,
            "--token-file",
            pod_contract.TOKEN_FILE,
            *(["--budget-authority", settings.budget_authority_url] if settings.budget_authority_url else []),
        ],
        "ports": [
            {"name": "sluicegate-api", "containerPort": port, "protocol": "TCP"},
            {"name": "sluicegate-ops", "containerPort": OPS_PORT, "protocol": "TCP"},
        ],
        "env": env,
        "resources": resources,
        "startupProbe": {**probe, "periodSeconds": 1, "failureThreshold": 120},
        "readinessProbe": {**probe, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": OPS_PORT}, "periodSeconds": 10},
        "volumeMounts": [
            {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": PODINFO_VOLUME, "mountPath": PODINFO_DIR, "readOnly": True},
            {"name": LEDGER_VOLUME, "mountPath": LEDGER_DIR},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if settings.image_pull_policy:
        container["imagePullPolicy"] = settings.image_pull_policy
    return container


def sidecar_volumes(settings: InjectionSettings) -> list[dict[str, Any]]:
    token = {
        "serviceAccountToken": {
            "audience": settings.token_audience,
            "expirationSeconds": settings.token_seconds,
            "path": pod_contract.TOKEN_NAME,
        }
    }
    return [
        {"name": CONFIG_VOLUME, "secret": {"secretName": "sluicegate-config", "optional": True}},
        {"name": TOKEN_VOLUME, "projected": {"sources": [token]}},
        {
            "name": PODINFO_VOLUME,
            "downwardAPI": {
                "items": [{"path": pod_contract.LABELS_FILE, "fieldRef": {"fieldPath": "metadata.labels"}}]
            },
        },
        {"name": LEDGER_VOLUME, "emptyDir": {}},
    ]


def app_env(port: int) -> list[dict[str, str]]:
    base = f"http://127.0.0.1:{port}"
    return [
        {"name": "OPENAI_BASE_URL", "value": f"{base}/v1"},
        {"name": "OPENAI_API_KEY", "value": PLACEHOLDER_KEY},
        {"name": "ANTHROPIC_BASE_URL", "value": base},
        {"name": "ANTHROPIC_API_KEY", "value": PLACEHOLDER_KEY},
    ]


def _append_ops(path: str, current: Sequence[Any] | None, items: Sequence[Any]) -> list[dict[str, Any]]:
    if not items:
        return []
    if current is None:
        return [{"op": "add", "path": path, "value": list(items)}]
    return [{"op": "add", "path": f"{path}/-", "value": item} for item in items]


def injection_patch(
    pod: Mapping[str, Any], settings: InjectionSettings, public_keys_json: str
) -> list[dict[str, Any]]:
    """JSON Patch ops (RFC 6902) that inject the sidecar; [] when the Pod is not opted in or already done."""
    if not wants_injection(pod) or is_injected(pod):
        return []
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        raise InjectionError("hostNetwork Pods cannot get the sidecar: its loopback port would be the node's")
    sidecar = sidecar_container(pod, settings, public_keys_json)
    port = int(sidecar["ports"][0]["containerPort"])
    ops: list[dict[str, Any]] = []
    if spec.get("initContainers") is None:
        ops.append({"op": "add", "path": "/spec/initContainers", "value": [sidecar]})
    else:
        ops.append({"op": "add", "path": "/spec/initContainers/0", "value": sidecar})
    existing_volumes = {v.get("name") for v in spec.get("volumes") or ()}
    volumes = [v for v in sidecar_volumes(settings) if v["name"] not in existing_volumes]
    ops += _append_ops("/spec/volumes", spec.get("volumes"), volumes)
    for index, container in enumerate(spec.get("containers") or ()):
        present = {e.get("name") for e in container.get("env") or ()}
        missing = [e for e in app_env(port) if e["name"] not in present]
        ops += _append_ops(f"/spec/containers/{index}/env", container.get("env"), missing)
    annotations = (pod.get("metadata") or {}).get("annotations")
    if annotations is None:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {INJECTED_BY: settings.version}})
    else:
        ops.append(
            {"op": "add", "path": f"/metadata/annotations/{_escape(INJECTED_BY)}", "value": settings.version}
        )
    return ops


def apply_patch(document: dict[str, Any], ops: Sequence[Mapping[str, Any]]) -> None:
    """Apply the ``add`` ops ``injection_patch`` makes, in place (for kopf's patch functions)."""
    for op in ops:
        if op["op"] != "add":
            raise ValueError(f"unsupported op {op['op']!r}")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in str(op["path"]).split("/")[1:]]
        target: Any = document
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        last, value = parts[-1], copy.deepcopy(op["value"])
        if isinstance(target, list):
            if last == "-":
                target.append(value)
            else:
                target.insert(int(last), value)
        else:
            target[last] = value
