"""kopf admission wiring: the Pod mutating handler (sidecar injection) and validating handlers for the CRs.

The decisions live in ``injection`` (pure) and in ``crparse`` (the strict parser render uses); this module
only adapts them to kopf. The handler ids are the URL paths the webhook configurations must call.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import kopf

from .crparse import GROUP, PLURALS, SPEC_TYPES, VERSION, ResourceError, parse_spec
from .injection import (
    InjectionError,
    InjectionSettings,
    apply_patch,
    injection_patch,
    is_injected,
    wants_injection,
)
from .keystore import Keystore


def validation_error(obj: Mapping[str, Any], kind: str) -> str | None:
    """Why a CR cannot be accepted, naming the resource and the field; None when it parses."""
    try:
        parse_spec({**obj, "kind": kind}, SPEC_TYPES[kind])
    except ResourceError as exc:
        return f"{exc} — fix the spec and apply again"
    return None


def register_webhooks(
    registry: kopf.OperatorRegistry,
    keystore: Keystore,
    settings: InjectionSettings,
    *,
    webhook_id: str = "mutate-pods",
) -> None:
    @kopf.on.mutate("v1", "pods", id=webhook_id, operations=["CREATE"], registry=registry)
    async def inject_sidecar(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        pod: Mapping[str, Any] = body
        if not wants_injection(pod) or is_injected(pod):
            return
        try:
            ops = injection_patch(pod, settings, await keystore.public_keys_json())
        except InjectionError as exc:
            raise kopf.AdmissionError(f"sluicegate cannot inject this Pod: {exc}", code=400) from None
        patch.fns.append(functools.partial(apply_patch, ops=ops))

    for kind, plural in PLURALS.items():

        @kopf.on.validate(
            GROUP, VERSION, plural, id=f"validate-{plural}", operations=["CREATE", "UPDATE"],
            param=kind, registry=registry,
        )  # fmt: skip
        async def validate(body: kopf.Body, param: Any = None, **_: Any) -> None:
            problem = validation_error(body, str(param))
            if problem is not None:
                raise kopf.AdmissionError(problem, code=422)
