from __future__ import annotations

import base64

import aiohttp
import pytest

from sluicegate_operator.keyservice import KeyService, server_tls, serving
from sluicegate_operator.keystore import Keystore
from sluicegate_operator.kube import Kube
from sluicegate_operator.kubeapi import load_configuration
from tests.support.kmocksupport import SluicegateKubernetes, declare_resources, make_tls, script_token_reviews

pytestmark = pytest.mark.kmock(cls=SluicegateKubernetes)

SA = "system:serviceaccount:{}:web"
TOKENS = {
    "token-a": {"username": SA.format("team-a"), "audiences": ["sluicegate"]},
    "token-b": {"username": SA.format("team-b"), "audiences": ["sluicegate"]},
    "token-api": {"username": SA.format("team-a"), "audiences": ["https://kubernetes.default.svc"]},
    "token-user": {"username": "alice@example.com", "audiences": ["sluicegate"]},
}


@pytest.fixture
async def service(kmock, tmp_path):
    declare_resources(kmock)
    reviews = script_token_reviews(kmock, TOKENS)
    kube = Kube(await load_configuration(server=str(kmock.url)))
    keystore = Keystore(kube, "sluicegate-system")
    rings = {ns: await keystore.data_ring(ns, create=True) for ns in ("team-a", "team-b")}
    tls = make_tls(tmp_path)
    app = KeyService(kube, keystore).app()
    connector = aiohttp.TCPConnector(ssl=tls.client_context())
    async with (
        serving(app, host="127.0.0.1", port=0, tls=server_tls(tls.cert_path, tls.key_path)) as port,
        aiohttp.ClientSession(connector=connector) as http,
    ):

        async def ask(token=None, **kwargs):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.post(f"https://127.0.0.1:{port}/v1/keys", headers=headers, **kwargs) as resp:
                return resp.status, await resp.json()

        yield ask, rings, reviews, kmock
    await kube.close()


def decoded(keys):
    return {kid: base64.b64decode(text) for kid, text in keys.items()}


async def test_a_valid_token_gets_its_own_namespace_keys_only(service):
    ask, rings, reviews, _ = service
    status, body = await ask("token-a")
    assert status == 200
    assert body["namespace"] == "team-a"
    assert body["active"] == rings["team-a"].active.kid
    assert decoded(body["keys"]) == dict(rings["team-a"].keys)
    assert not set(body["keys"]) & set(rings["team-b"].keys)
    assert reviews[-1]["spec"] == {"token": "token-a", "audiences": ["sluicegate"]}


async def test_a_token_for_namespace_b_cannot_read_namespace_a_keys(service):
    ask, rings, _, _ = service
    status, body = await ask("token-b", json={"namespace": "team-a"}, params={"namespace": "team-a"})
    assert status == 200
    assert body["namespace"] == "team-b"
    assert decoded(body["keys"]) == dict(rings["team-b"].keys)
    assert not set(body["keys"]) & set(rings["team-a"].keys)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("not-a-token", id="invalid"),
        pytest.param("expired-token", id="expired"),
        pytest.param("token-api", id="wrong-audience"),
    ],
)
async def test_rejected_tokens_get_401_and_no_keys(service, token):
    ask, *_ = service
    status, body = await ask(token)
    assert status == 401
    assert "keys" not in body and body["error"]


async def test_a_request_without_a_bearer_token_gets_401(service):
    ask, *_ = service
    status, _ = await ask(None)
    assert status == 401


async def test_a_token_that_is_not_a_service_account_gets_403(service):
    ask, *_ = service
    status, body = await ask("token-user")
    assert status == 403 and "keys" not in body


async def test_data_keys_live_only_in_the_operator_namespace(service):
    _, _, _, k8s = service
    secrets = [key for key in k8s.objects if key[0].plural == "secrets"]
    assert {ns for _, ns, _ in secrets} == {"sluicegate-system"}
