"""A kmock 0.8 Kubernetes emulator closer to a real apiserver, plus helpers for operator tests.

Works around kmock 0.8's gaps: stamps uid/creationTimestamp/generation/resourceVersion,
bumps resourceVersion on every change (no-op patches change nothing and emit no event; a deletion gets
one too), answers a failed JSON-Patch ``test`` with 422, returns a real list resourceVersion (and pages of ``limit`` joined by ``continue``), skips
replayed watch events, names ``generateName`` objects, folds Secret ``stringData`` into ``data``, treats ``?watch=True`` as a
watch, keeps review resources (TokenReview) out of storage so tests can script them, and serves
Namespaces by name (create, read, delete → Terminating; kmock 0.8 answers 500 for them).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import json
import secrets
import ssl
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
import kmock._internal as kmock_internal
import trustme
from kmock._internal import apps, enums, rendering

REVIEW_RESOURCES = frozenset({"tokenreviews", "subjectaccessreviews", "selfsubjectaccessreviews"})


@attrs.define(kw_only=True)
class SluicegateKubernetes(kmock.KubernetesEmulator):
    """kmock's emulator with the apiserver behaviours kopf and the operator rely on."""

    _last_rv: int = attrs.field(default=0, init=False)
    namespaces: dict[str, dict[str, Any]] = attrs.field(factory=dict, init=False)

    def _evolve(self, request: rendering.Request, **changes: Any) -> rendering.Request:
        # Views select requests by membership in the root's request list: swap the evolved one in.
        evolved = attrs.evolve(request, **changes)
        for index, seen in enumerate(self._requests):
            if seen is request:
                self._requests[index] = evolved
        return evolved

    def _next_rv(self) -> str:
        self._last_rv += 1
        return str(self._last_rv)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        parts = raw_request.path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:  # kmock cannot parse these
            data = await raw_request.json() if raw_request.can_read_body else None
            return self._serve_namespace(raw_request.method, parts[3] if len(parts) == 4 else None, data)
        return await super().__call__(raw_request)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None:
            return await super()._handle(request)
        if request.resource.plural in REVIEW_RESOURCES:
            return await apps.RawHandler._handle(self, request)  # scripted reactions only, nothing stored
        if request.method == enums.method.GET and str(request.params.get("watch", "")).lower() in {
            "true",
            "1",
        }:
            request = self._evolve(request, action=enums.action.WATCH)
        if request.action == enums.action.CREATE and isinstance(request.data, Mapping):
            request = self._evolve(request, data=self._stamp_created(request))
        elif request.action == enums.action.UPDATE and request.name is not None:
            evolved = await self._prepare_patch(request)
            if isinstance(evolved, aiohttp.web.StreamResponse):
                return evolved
            request = evolved
        elif request.action == enums.action.DELETE and request.name is not None:
            marked = await self._mark_for_deletion(request)
            if marked is not None:
                return marked
        return await super()._handle(request)

    def _serve_namespace(self, method: str, name: str | None, data: Any) -> aiohttp.web.StreamResponse:
        if method == "POST" and name is None and isinstance(data, Mapping):
            meta = dict(data.get("metadata") or {})
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion=self._next_rv())
            obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta, "status": {"phase": "Active"}}
            self.namespaces[str(meta["name"])] = obj
            return aiohttp.web.json_response(obj, status=201)
        if method == "GET" and name is None:
            items = list(self.namespaces.values())
            return aiohttp.web.json_response({"kind": "NamespaceList", "metadata": {}, "items": items})
        obj = self.namespaces.get(name or "")
        if obj is None:
            status = {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}
            return aiohttp.web.json_response(status, status=404)
        if method == "DELETE":  # Terminating until remove_namespace()
            obj["metadata"]["deletionTimestamp"] = _now()
            obj["status"] = {"phase": "Terminating"}
        return aiohttp.web.json_response(obj)

    def remove_namespace(self, name: str) -> None:
        """The namespace controller's last step: the Namespace itself is gone."""
        self.namespaces.pop(name, None)

    def _stamp_created(self, request: rendering.Request) -> dict[str, Any]:
        data = copy.deepcopy(dict(request.data))
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        meta["resourceVersion"] = self._next_rv()
        _fold_string_data(data)
        return data

    async def _prepare_patch(
        self, request: rendering.Request
    ) -> rendering.Request | aiohttp.web.StreamResponse:
        assert request.resource is not None
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            try:
                current = self.objects[key]
                old = None if current.deleted else current.raw
            except KeyError:
                old = None
        if old is None:
            return request  # kmock answers 404
        if isinstance(request.data, list):
            try:
                new = jsonpatch.apply_patch(copy.deepcopy(old), request.data)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc
        elif isinstance(request.data, Mapping):
            new = _merge(copy.deepcopy(old), copy.deepcopy(dict(request.data)))
        else:
            raise kmock.KubernetesError(status=400, reason="BadRequest", message="unsupported patch body")
        if request.subresource == "status":
            new = (
                {**old, "status": new.get("status")}
                if "status" in new
                else {k: v for k, v in old.items() if k != "status"}
            )
        elif request.resource.group and "status" in old and self._status_is_subresource(request.resource):
            new["status"] = old["status"]  # the main resource ignores status, as with a status subresource
        _fold_string_data(new)
        if new == old:
            return aiohttp.web.json_response(old)
        meta = new.setdefault("metadata", {})
        meta["resourceVersion"] = self._next_rv()
        if old.get("spec") != new.get("spec"):
            meta["generation"] = int(old.get("metadata", {}).get("generation", 1)) + 1
        return self._evolve(request, data=_merge_patch_between(old, new))

    def _status_is_subresource(self, resource: Any) -> bool:
        """As declared; kopf's peering objects keep their status in the main resource."""
        info = self._resources.get(resource)
        return info is None or "status" in info.subresources

    async def _mark_for_deletion(self, request: rendering.Request) -> aiohttp.web.StreamResponse | None:
        assert request.resource is not None
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            try:
                obj = self.objects[key]
            except KeyError:
                return None
            if obj.deleted:
                return None
            meta = obj.get("metadata", {})
            if not meta.get("finalizers") or meta.get("deletionTimestamp"):
                # The DELETED event carries a new resourceVersion, as from an apiserver: a watch that
                # began after the object's last change must still see it go.
                obj.patch({"metadata": {"resourceVersion": self._next_rv()}})
                return None
            obj.patch({"metadata": {"deletionTimestamp": _now(), "resourceVersion": self._next_rv()}})
            raw = obj.raw
            await self._buses[request.resource].put({"type": "MODIFIED", "object": raw})
        return aiohttp.web.json_response(raw)

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        result = await super()._serve_list(request)
        assert isinstance(result, dict)
        result["metadata"] = {"resourceVersion": str(self._last_rv)}
        limit = _int_or_zero(request.params.get("limit"))
        if limit <= 0:
            return result
        # Pages of ``limit`` with a ``continue`` token, all at the first page's resourceVersion.
        token = request.params.get("continue") or ""
        start, version = token.split(":") if token else ("0", str(self._last_rv))
        first, items = int(start), result["items"]
        more = first + limit < len(items)
        result["items"] = items[first : first + limit]
        result["metadata"] = {
            "resourceVersion": version,
            "continue": f"{first + limit}:{version}" if more else "",
        }
        return result

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        since = _int_or_zero(request.params.get("resourceVersion"))
        async for event in super()._serve_watch(request):
            if isinstance(event, Mapping) and since:
                rv = _int_or_zero(event.get("object", {}).get("metadata", {}).get("resourceVersion"))
                if rv and rv <= since:
                    continue
            yield event


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_or_zero(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _fold_string_data(obj: dict[str, Any]) -> None:
    if obj.get("kind") == "Secret" and isinstance(obj.get("stringData"), Mapping):
        data = dict(obj.get("data") or {})
        for key, value in obj.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data


def _merge(base: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(base) if isinstance(base, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _merge_patch_between(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch (None deletes) that turns ``old`` into ``new`` under kmock's dict merging."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            sub = _merge_patch_between(before, value)
            if sub:
                patch[key] = sub
        elif before != value or key not in old:
            patch[key] = value
    return patch


def declare_resources(k8s: kmock.KubernetesEmulator) -> None:
    """Built-in resources plus the three Sluicegate CRDs (discovery must know them before kopf starts)."""
    # load_bundled() calls the deprecated importlib.resources.read_binary: an error under filterwarnings.
    k8s.resources.load_path(Path(kmock_internal.__file__).parent / "resources.json.gz")
    for plural, kind in [
        ("providerconnections", "ProviderConnection"),
        ("routingtiers", "RoutingTier"),
        ("budgetpolicies", "BudgetPolicy"),
    ]:
        k8s.resources[f"sluicegate.io/v1alpha1/{plural}"] = {
            "kind": kind,
            "singular": plural[:-1] if not plural.endswith("ies") else plural[:-3] + "y",
            "namespaced": True,
            "verbs": {"list", "watch", "get", "patch", "create", "delete"},
            "subresources": {"status"},
        }


def script_token_reviews(
    k8s: kmock.KubernetesEmulator, accepted: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Answer TokenReviews as an apiserver: known tokens authenticate, others carry only ``status.error``.

    ``accepted`` maps a token to ``{"username": ..., "audiences": [...]}``. A review that asks for audiences
    the token does not carry is rejected, as the apiserver does. Returns the list of reviews received.
    """
    received: list[dict[str, Any]] = []

    def answer(request: rendering.Request) -> dict[str, Any]:
        review = dict(request.data)
        received.append(review)
        spec = review.get("spec", {})
        wanted = list(spec.get("audiences") or [])
        known = accepted.get(spec.get("token", ""))
        base = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {}, "spec": spec}
        if known is None or (wanted and not set(wanted) & set(known["audiences"])):
            return {
                **base,
                "status": {"user": {}, "error": "[invalid bearer token, token audiences mismatch]"},
            }
        user = {"username": known["username"], "uid": str(uuid.uuid4()), "groups": ["system:serviceaccounts"]}
        return {
            **base,
            "status": {"authenticated": True, "user": user, "audiences": list(known["audiences"])},
        }

    k8s["post /apis/authentication.k8s.io/v1/tokenreviews"] << answer
    return received


def read_object(
    k8s: kmock.KubernetesEmulator, resource: str, namespace: str | None, name: str
) -> dict[str, Any] | None:
    """The live object or None (``key in k8s.objects`` is unreliable in kmock 0.8)."""
    try:
        obj = k8s.objects[resource, namespace, name]
    except KeyError:
        return None
    return None if obj.deleted else copy.deepcopy(obj.raw)


def secret_data(obj: Mapping[str, Any]) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in (obj.get("data") or {}).items()}


async def eventually(check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns a truthy value without raising; re-raise the last failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            value = check()
            if isinstance(value, Awaitable):
                value = await value
            if value:
                return value
            failure: BaseException = AssertionError(f"still falsy after {timeout}s: {value!r}")
        except (AssertionError, KeyError, LookupError, ValueError) as exc:
            failure = exc
        if loop.time() > deadline:
            raise failure
        await asyncio.sleep(interval)


async def settle(seconds: float = 0.5) -> None:
    """Give the operator time to (not) react; used before asserting that nothing happened."""
    await asyncio.sleep(seconds)


@attrs.frozen
class TlsFiles:
    ca: trustme.CA
    cert_path: Path
    key_path: Path
    ca_path: Path

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


def make_tls(directory: Path, *hosts: str) -> TlsFiles:
    """A trustme CA and a server certificate for ``hosts`` as PEM files (kopf's own generation fails)."""
    ca = trustme.CA()
    cert = ca.issue_cert(*(hosts or ("127.0.0.1", "localhost")))
    cert_path, key_path, ca_path = directory / "tls.crt", directory / "tls.key", directory / "ca.crt"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    ca.cert_pem.write_to_path(str(ca_path))
    return TlsFiles(ca=ca, cert_path=cert_path, key_path=key_path, ca_path=ca_path)


def apply_json_patch(document: Any, ops: list[Mapping[str, Any]]) -> Any:
    """A small RFC 6902 applier for the tests, independent of the code under test."""
    doc = copy.deepcopy(document)
    for op in ops:
        kind, path = op["op"], _pointer(op["path"])
        if kind == "test":
            assert _get(doc, path) == op["value"], op
        elif kind == "remove":
            _remove(doc, path)
        elif kind in {"add", "replace"}:
            if kind == "replace":
                _get(doc, path)
            doc = _add(doc, path, copy.deepcopy(op["value"]), replace=kind == "replace")
        elif kind in {"move", "copy"}:
            source = _pointer(op["from"])
            value = copy.deepcopy(_get(doc, source))
            if kind == "move":
                _remove(doc, source)
            doc = _add(doc, path, value, replace=False)
        else:
            raise AssertionError(f"unknown op {op!r}")
    return doc


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    assert path.startswith("/"), path
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _get(doc: Any, path: list[str]) -> Any:
    for part in path:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _add(doc: Any, path: list[str], value: Any, *, replace: bool) -> Any:
    if not path:
        return value
    parent = _get(doc, path[:-1])
    last = path[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif replace:
            parent[int(last)] = value
        else:
            assert 0 <= int(last) <= len(parent), path
            parent.insert(int(last), value)
    else:
        assert isinstance(parent, dict), path
        parent[last] = value
    return doc


def _remove(doc: Any, path: list[str]) -> None:
    parent = _get(doc, path[:-1])
    if isinstance(parent, list):
        del parent[int(path[-1])]
    else:
        del parent[path[-1]]


@contextlib.asynccontextmanager
async def running(coro_factory: Callable[[asyncio.Event], Awaitable[Any]]) -> AsyncIterator[None]:
    """Run ``coro_factory(stop_flag)`` in its own thread and event loop for the duration of the block.

    kopf's operator() waits for, then cancels, every task created while it ran — including the test's own
    (pytest-asyncio's fixture finalizers). A loop of its own keeps the two apart; kmock keeps serving here.
    """
    ready = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        async def body() -> None:
            box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await coro_factory(box["stop"])

        try:
            asyncio.run(body())
        except BaseException as exc:
            box["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=main, name="operator", daemon=True)
    thread.start()
    await asyncio.to_thread(ready.wait)
    try:
        yield
    finally:
        if "loop" in box and not box["loop"].is_closed():
            with contextlib.suppress(RuntimeError):
                box["loop"].call_soon_threadsafe(box["stop"].set)
        await asyncio.to_thread(thread.join, 30)
        if "error" in box:
            raise box["error"]
        assert not thread.is_alive(), "the operator did not stop within 30 s"


def admission_review(
    obj: Mapping[str, Any],
    *,
    resource: tuple[str, str, str] = ("", "v1", "pods"),
    namespace: str = "default",
    operation: str = "CREATE",
    kind: str = "Pod",
) -> dict[str, Any]:
    group, version, plural = resource
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": plural},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": plural},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": copy.deepcopy(dict(obj)),
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def decode_patch(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The JSON Patch ops of an AdmissionReview's ``response`` ([] when there is none)."""
    if "patch" not in payload:
        return []
    assert payload["patchType"] == "JSONPatch"
    decoded: list[dict[str, Any]] = json.loads(base64.b64decode(payload["patch"]))
    return decoded
