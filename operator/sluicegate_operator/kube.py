"""The operator's only door to the Kubernetes API (kubernetes_asyncio; reaching the API server and
reading its replies as it sent them: ``kubeapi``).

Secrets, ConfigMaps, Pods (listed), the CRs and their status, Events, TokenReview.

Objects go in and come out as plain dicts. Custom objects are always patched as JSON merge patches.
Holds no cluster state of its own; it tells a WriteLog the resourceVersion of each object it writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from sluicegate_contract.timestamps import format_time

from .crparse import GROUP, PLURALS, VERSION
from .kubeapi import env_has_proxy_or_netrc, json_object, json_unless_missing, unless_missing
from .watchstate import WriteLog

MERGE_PATCH = "application/merge-patch+json"
COMPONENT = "sluicegate-operator"
_KIND_OF = {plural: kind for kind, plural in PLURALS.items()}


class AlreadyExists(Exception):
    """A create found the object already there (HTTP 409)."""


class WatchGone(Exception):
    """A watch's resourceVersion is too old to resume from (HTTP 410): list again."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """How to reach the API server; handed to kopf's login so both clients agree."""

    server: str
    ca_path: str | None
    insecure: bool
    token: str | None
    certificate_path: str | None
    private_key_path: str | None


@dataclass(frozen=True, slots=True)
class TokenIdentity:
    """What a TokenReview said about a bearer token."""

    authenticated: bool
    username: str
    audiences: tuple[str, ...]
    error: str

    @property
    def service_account(self) -> tuple[str, str] | None:
        """(namespace, name) for a ServiceAccount token, else None."""
        parts = self.username.split(":")
        if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"] and parts[2] and parts[3]:
            return parts[2], parts[3]
        return None


class Kube:
    """A thin async wrapper; ``close()`` when done."""

    def __init__(self, configuration: client.Configuration, writes: WriteLog | None = None) -> None:
        self._configuration = configuration
        self._api = client.ApiClient(configuration)
        if not env_has_proxy_or_netrc():
            # kubernetes_asyncio's session trusts the environment, so each request looked for proxy
            # variables and ~/.netrc on two worker threads (issue 19: much of the operator's CPU
            # time at a restart). With neither there, nothing changes but the cost.
            self._api.rest_client.pool_manager._trust_env = False
        self.writes = writes if writes is not None else WriteLog()

    def _wrote(self, plural: str, namespace: str, name: str, obj: Any) -> None:
        meta = obj.get("metadata") if isinstance(obj, Mapping) else None
        if isinstance(meta, Mapping):
            self.writes.record((plural, namespace, name), meta.get("resourceVersion"))

    async def close(self) -> None:
        await self._api.close()

    async def credentials(self) -> Credentials:
        cfg = self._configuration
        token: str | None = None
        if "BearerToken" in cfg.api_key:
            raw = await cfg.get_api_key_with_prefix("BearerToken")
            token = str(raw).removeprefix("Bearer ").strip() or None
        return Credentials(
            server=str(cfg.host),
            ca_path=cfg.ssl_ca_cert,
            insecure=not cfg.verify_ssl,
            token=token,
            certificate_path=cfg.cert_file,
            private_key_path=cfg.key_file,
        )

    # The generated stubs want model objects and omit ``_content_type``; we pass dicts on purpose.
    def _core(self) -> Any:
        return client.CoreV1Api(self._api)

    def _custom(self) -> Any:
        return client.CustomObjectsApi(self._api)

    def _auth(self) -> Any:
        return client.AuthenticationV1Api(self._api)

    def _plain(self, obj: Any) -> dict[str, Any]:
        plain = self._api.sanitize_for_serialization(obj)
        assert isinstance(plain, dict)
        return plain

    # Secrets and ConfigMaps

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await json_unless_missing(
            self._core().read_namespaced_secret(name, namespace, _preload_content=False)
        )

    async def create_secret(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": "v1", "kind": "Secret", **body}
        try:
            created = await json_object(
                self._core().create_namespaced_secret(namespace, body, _preload_content=False)
            )
        except ApiException as exc:
            if exc.status == 409:
                raise AlreadyExists(f"Secret {namespace}/{body['metadata']['name']}") from None
            raise
        self._wrote("secrets", namespace, str(body["metadata"]["name"]), created)
        return created

    async def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        api = self._core()
        patched = await json_object(
            api.patch_namespaced_secret(
                name, namespace, dict(patch), _content_type=MERGE_PATCH, _preload_content=False
            )
        )
        self._wrote("secrets", namespace, name, patched)
        return patched

    async def delete_secret(self, namespace: str, name: str) -> bool:
        return await unless_missing(self._core().delete_namespaced_secret(name, namespace)) is not None

    async def list_secrets_everywhere(self, label_selector: str) -> list[dict[str, Any]]:
        """Secrets of every namespace with the labels (the hosted budget authority's config Secrets)."""
        listing = await self._core().list_secret_for_all_namespaces(label_selector=label_selector)
        return [self._plain(secret) for secret in listing.items]

    async def list_secrets(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        listing = await self._core().list_namespaced_secret(namespace, label_selector=label_selector)
        return [self._plain(secret) for secret in listing.items]

    def _collection(self, plural: str, namespace: str | None, **kwargs: Any) -> Awaitable[Any]:
        """A list (or watch) call for Secrets or a Sluicegate CR, in ``namespace`` (None: everywhere)."""
        if plural == "secrets":
            core = self._core()
            if namespace is None:
                return core.list_secret_for_all_namespaces(**kwargs)  # type: ignore[no-any-return]
            return core.list_namespaced_secret(namespace, **kwargs)  # type: ignore[no-any-return]
        custom = self._custom()
        if namespace is None:
            return custom.list_cluster_custom_object(GROUP, VERSION, plural, **kwargs)  # type: ignore[no-any-return]
        return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, **kwargs)  # type: ignore[no-any-return]

    async def list_page(
        self, plural: str, namespace: str | None, *, limit: int, token: str = ""
    ) -> dict[str, Any]:
        """One page of a listing of ``plural`` (``secrets`` or a CR's), as the API sent it."""
        kwargs: dict[str, Any] = {"limit": limit, "_preload_content": False}
        if token:
            kwargs["_continue"] = token
        return await json_object(self._collection(plural, namespace, **kwargs))

    async def watch(
        self, plural: str, namespace: str | None, version: str, *, timeout_seconds: int
    ) -> AsyncIterator[bytes]:
        """The watch stream of ``plural`` from ``version`` (JSON lines, in chunks) until the API server ends
        the request; WatchGone when that version is too old."""
        response = await self._collection(
            plural,
            namespace,
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=version,
            timeout_seconds=timeout_seconds,
            _preload_content=False,
            _request_timeout=timeout_seconds + 30,
        )
        try:
            if response.status == 410:
                raise WatchGone()
            if response.status != 200:
                raise ApiException(status=response.status, reason=response.reason)
            async for chunk in response.content.iter_chunked(1 << 16):
                yield chunk
        finally:
            response.release()

    async def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = await unless_missing(self._core().read_namespaced_config_map(name, namespace))
        return None if found is None else self._plain(found)

    async def apply_config_map(self, namespace: str, body: Mapping[str, Any]) -> None:
        """Create, or merge-patch when it exists."""
        api = self._core()
        body = {"apiVersion": "v1", "kind": "ConfigMap", **body}
        try:
            await api.create_namespaced_config_map(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            name = body["metadata"]["name"]
            await api.patch_namespaced_config_map(name, namespace, body, _content_type=MERGE_PATCH)

    # Namespaces and Pods

    async def namespace_gone(self, namespace: str) -> bool:
        """True when the namespace no longer exists or is being deleted (Terminating)."""
        found = await unless_missing(self._core().read_namespace(namespace))
        if found is None:
            return True
        return bool(self._plain(found).get("metadata", {}).get("deletionTimestamp"))

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        listing = await self._core().list_namespaced_pod(namespace, label_selector=label_selector)
        return [self._plain(pod) for pod in listing.items]

    # Sluicegate custom resources

    async def list_custom(self, namespace: str, plural: str) -> list[dict[str, Any]]:
        api = self._custom()
        listing = await api.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        kind = _KIND_OF[plural]
        items: list[dict[str, Any]] = []
        for item in listing.get("items", []):
            if (item.get("metadata") or {}).get("deletionTimestamp"):
                continue
            items.append({"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, **item})
        return items

    async def read_custom(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        api = self._custom()
        item = await unless_missing(api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))
        if item is None:
            return None
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": _KIND_OF[plural], **item}

    async def patch_custom(self, namespace: str, plural: str, name: str, patch: Mapping[str, Any]) -> bool:
        """Merge-patch a custom object (its metadata, say); False when the object is gone."""
        api = self._custom()
        patched = await unless_missing(
            api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, dict(patch), _content_type=MERGE_PATCH
            )
        )
        self._wrote(plural, namespace, name, patched)
        return patched is not None

    async def patch_custom_status(
        self, namespace: str, plural: str, name: str, patch: Mapping[str, Any]
    ) -> bool:
        """Merge-patch the status subresource; False when the object is gone."""
        api = self._custom()
        patched = await unless_missing(
            api.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, dict(patch), _content_type=MERGE_PATCH
            )
        )
        self._wrote(plural, namespace, name, patched)
        return patched is not None

    async def read_peering(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        """kopf's peering object: a ClusterKopfPeering, or a KopfPeering in ``namespace``."""
        api = self._custom()
        if namespace is None:
            call = api.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)
        else:
            call = api.get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", name)
        found = await unless_missing(call)
        return found if isinstance(found, dict) else None

    # Events and authentication

    async def post_event(
        self, involved: Mapping[str, Any], *, type: str, reason: str, message: str, now: datetime
    ) -> None:
        meta = involved.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        stamp = format_time(now)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": "sluicegate-", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        # The reply is not needed: not decoded into a model (issue 19: ~14 Events per namespace sealed).
        await json_object(self._core().create_namespaced_event(namespace, body, _preload_content=False))

    async def review_token(self, token: str, audiences: list[str]) -> TokenIdentity:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences},
        }
        review = self._plain(await self._auth().create_token_review(body))
        status = review.get("status") or {}
        user = status.get("user") or {}
        return TokenIdentity(
            authenticated=bool(status.get("authenticated")),  # absent on a rejected token
            username=str(user.get("username") or ""),
            audiences=tuple(str(a) for a in status.get("audiences") or ()),
            error=str(status.get("error") or ""),
        )
