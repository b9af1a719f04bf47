"""Reaching the Kubernetes API server (the client's configuration) and reading its replies as the
API sent them: the I/O helpers under ``kube.Kube``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException


async def load_configuration(
    *, kubeconfig: str | None = None, context: str | None = None, server: str | None = None
) -> client.Configuration:
    """An explicit ``server`` (tests, no auth), else in-cluster, else the kubeconfig (``$KUBECONFIG``)."""
    cfg = client.Configuration()
    if server is not None:
        cfg.host = server
        cfg.verify_ssl = False
    elif kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        await config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
    return cfg


async def unless_missing(call: Awaitable[Any]) -> Any:
    """The call's result, or None when the object is not there (404); other API errors propagate."""
    try:
        return await call
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "NETRC")


def env_has_proxy_or_netrc() -> bool:
    if any(os.environ.get(name) for name in PROXY_ENV):
        return True
    return os.path.exists(os.path.expanduser("~/.netrc"))


async def json_reply(call: Awaitable[Any], *, missing_ok: bool = False) -> dict[str, Any] | None:
    """A call made with ``_preload_content=False``: the object as the API sent it (None for a 404 when
    ``missing_ok``); other statuses raise ApiException with the status, as the client's models would.

    Skips the client's model round trip (parsing every timestamp and back) on the operator's most frequent
    calls: a reconcile reads a namespace's Secrets, writes the config Secret and posts Events (issue 19).
    """
    response = await call
    try:
        if missing_ok and response.status == 404:
            return None
        raw = await response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(status=response.status, reason=response.reason)
    finally:
        response.release()
    found = json.loads(raw)
    if not isinstance(found, dict):
        raise ApiException(status=response.status, reason="the API answered something other than an object")
    return found


async def json_unless_missing(call: Awaitable[Any]) -> dict[str, Any] | None:
    return await json_reply(call, missing_ok=True)


async def json_object(call: Awaitable[Any]) -> dict[str, Any]:
    found = await json_reply(call)
    assert found is not None
    return found
