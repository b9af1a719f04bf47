"""The Azure OpenAI adapter: OpenAI bodies sent to a deployment URL with an ``api-key`` header. Pure.

Deployment names and API versions are checked before they go into a URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .base import NO_HEADERS, Connection, Operation, UnsupportedOperation, UpstreamRequest
from .openai import OpenAIAdapter
from .openai_request import JSON_HEADERS, build_openai_request, build_responses_request, openai_path

_DEPLOYMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_API_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:-preview)?|v1|latest|preview")


def deployment_name(conn: Connection, model: str) -> str:
    deployment = conn.azure_deployments.get(model, model)
    if not _DEPLOYMENT.fullmatch(deployment) or ".." in deployment:
        raise UnsupportedOperation(f"{deployment!r} is not a valid Azure deployment name")
    return deployment


def deployment_url(conn: Connection, model: str, op: Operation) -> str:
    """``{base}/openai/deployments/{deployment}/{path}?api-version={version}``, every part validated."""
    if not conn.base_url:
        raise ValueError(f"azure-openai connection {conn.name!r} has no base URL")
    deployment = deployment_name(conn, model)
    version = conn.azure_api_version
    if not version or not _API_VERSION.fullmatch(version):
        raise ValueError(f"azure-openai connection {conn.name!r} has no valid API version")
    path = openai_path(op, "azure-openai")
    return f"{conn.base_url.rstrip('/')}/openai/deployments/{deployment}{path}?api-version={version}"


def knows_completion_tokens(api_version: str | None) -> bool:
    """Whether this API version accepts ``max_completion_tokens`` (2024-09-01-preview and later, v1)."""
    if not api_version:
        return False
    return not api_version[:1].isdigit() or api_version[:10] >= "2024-09-01"


@dataclass(frozen=True, slots=True)
class AzureAdapter(OpenAIAdapter):
    """OpenAI's adapter with Azure's URL and key header; replies, streams and errors are OpenAI's."""

    provider: str = "azure-openai"
    default_base_url: str | None = None

    def build(
        self,
        op: Operation,
        conn: Connection,
        model: str,
        request: Mapping[str, Any],
        *,
        stream: bool,
        client_headers: Mapping[str, str] = NO_HEADERS,
    ) -> UpstreamRequest:
        headers = dict(JSON_HEADERS)
        if conn.api_key:
            headers["api-key"] = conn.api_key
        if op == "responses":
            # The Responses API lives only on Azure's v1 surface: no deployment in the URL, no
            # api-version; the deployment name goes in the body's ``model``.
            if not conn.base_url:
                raise ValueError(f"azure-openai connection {conn.name!r} has no base URL")
            url = f"{conn.base_url.rstrip('/')}/openai/v1/responses"
            return build_responses_request(url, headers, request, deployment_name(conn, model), stream)
        url = deployment_url(conn, model, op)
        # Azure picks the model by deployment; the body's ``model`` is ignored there and kept harmless.
        return build_openai_request(
            url,
            headers,
            request,
            model,
            stream and op != "embeddings",
            completion_tokens_field=op == "chat" and knows_completion_tokens(conn.azure_api_version),
        )
