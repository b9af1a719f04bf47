"""The docs/cluster-quickstart.md path against the cluster the kubeconfig points at (kind, or any other).

Skipped unless a cluster answers within two seconds. Expects the image to be pullable by the nodes
(for kind: `make image && kind load docker-image sluicegate:dev`); set SLUICEGATE_E2E_IMAGE to use another.
Installs (or upgrades) the chart as release `sluicegate` in sluicegate-system, works in a throw-away
namespace, deletes that namespace afterwards, and uninstalls the release only if it installed it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
RELEASE, OPERATOR_NS = "sluicegate", "sluicegate-system"
IMAGE = os.environ.get("SLUICEGATE_E2E_IMAGE", "sluicegate:dev")
PULL_POLICY = os.environ.get("SLUICEGATE_E2E_PULL_POLICY", "IfNotPresent")

APP = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: chat
spec:
  replicas: 1
  selector:
    matchLabels: {app: chat}
  template:
    metadata:
      labels: {app: chat, team: e2e}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: app
          image: IMAGE
          imagePullPolicy: PULL_POLICY
          command: ["python", "-c", "import time; time.sleep(10**9)"]
"""

# Runs inside the app container: the OpenAI-style call an app makes, with only the env the webhook set.
CALL = """\
import json, os, httpx
r = httpx.post(os.environ["OPENAI_BASE_URL"] + "/chat/completions", timeout=30,
    headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"], "X-Sluicegate-Team": "e2e"},
    json={"model": "tier:local", "messages": [{"role": "user", "content": "hello from the e2e test"}]})
print(json.dumps({"status": r.status_code, "headers": dict(r.headers), "body": r.json()}))
"""
METRICS = "import httpx; print(httpx.get('http://127.0.0.1:9470/metrics', timeout=10).text)"


def _kubeconfig_server() -> tuple[str, int] | None:
    """Host and port of the current context's API server, or None without a usable kubeconfig."""
    paths = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config")).split(os.pathsep)
    for path in (Path(p) for p in paths if p):
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        contexts = {c["name"]: c.get("context") or {} for c in config.get("contexts") or []}
        clusters = {c["name"]: c.get("cluster") or {} for c in config.get("clusters") or []}
        context = contexts.get(config.get("current-context", ""), {})
        server = clusters.get(context.get("cluster", ""), {}).get("server")
        if server:
            url = urlsplit(server)
            return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    return None


def _tool(name: str) -> str:
    local = REPO / ".tools" / "bin" / name
    found = str(local) if local.is_file() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} not found (run scripts/fetch-helm.py)")
    return found


@pytest.fixture(scope="module")
def cluster() -> Callable[..., str]:
    """run(tool, *args) -> stdout, once a cluster has answered; skips the module otherwise."""
    server = _kubeconfig_server()
    if server is None:
        pytest.skip("no kubeconfig with a current context: no cluster to test against")
    try:
        socket.create_connection(server, timeout=2).close()
    except OSError as error:
        pytest.skip(f"cluster API {server[0]}:{server[1]} is not reachable: {error}")
    tools = {"kubectl": _tool("kubectl"), "helm": _tool("helm")}

    def run(tool: str, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 360) -> str:
        done = subprocess.run(
            [tools[tool], *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    return run


def _helm_upgrade(cluster: Callable[..., str]) -> None:
    repository, _, tag = IMAGE.rpartition(":")
    cluster(
        "helm", "upgrade", "--install", RELEASE, str(REPO / "charts" / "sluicegate"),
        "--namespace", OPERATOR_NS, "--create-namespace", "--wait", "--timeout", "5m",
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", f"image.pullPolicy={PULL_POLICY}",
    )  # fmt: skip


@pytest.fixture(scope="module")
def installed(cluster: Callable[..., str]) -> Iterator[None]:
    existed = bool(cluster("helm", "status", RELEASE, "-n", OPERATOR_NS, check=False).strip())
    _helm_upgrade(cluster)
    yield
    if not existed:
        cluster("helm", "uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait", check=False)


@pytest.fixture(scope="module")
def namespace(cluster: Callable[..., str], installed: None) -> Iterator[str]:
    name = f"sluicegate-e2e-{secrets.token_hex(3)}"
    cluster("kubectl", "create", "namespace", name)
    yield name
    cluster("kubectl", "delete", "namespace", name, "--wait=false", check=False)


def _eventually(what: str, probe: Callable[[], Any], timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(3)


def _pod(cluster: Callable[..., str], namespace: str) -> dict[str, Any]:
    pods = json.loads(cluster("kubectl", "get", "pods", "-n", namespace, "-l", "app=chat", "-o", "json"))[
        "items"
    ]
    running = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(running) == 1, [p["metadata"]["name"] for p in running]
    return running[0]


def test_quickstart_path_injects_serves_and_accounts_spend(
    cluster: Callable[..., str], namespace: str
) -> None:
    ns = ["-n", namespace]
    cluster("kubectl", "apply", *ns, "-f", str(REPO / "examples"))
    _eventually(
        "the operator to seal a config for the namespace",
        lambda: cluster(
            "kubectl", "get", "secret", "sluicegate-config", *ns, "--ignore-not-found", "-o", "name"
        ),
    )

    cluster(
        "kubectl",
        "apply",
        *ns,
        "-f",
        "-",
        stdin=APP.replace("IMAGE", IMAGE).replace("PULL_POLICY", PULL_POLICY),
    )
    cluster("kubectl", "rollout", "status", "deployment/chat", *ns, "--timeout=180s")
    assert not _pod(cluster, namespace)["spec"].get("initContainers"), "an unlabelled Pod must be left alone"

    label = {"spec": {"template": {"metadata": {"labels": {"sluicegate.io/inject": "true"}}}}}
    cluster("kubectl", "patch", "deployment", "chat", *ns, "--type", "merge", "-p", json.dumps(label))
    cluster("kubectl", "rollout", "status", "deployment/chat", *ns, "--timeout=240s")
    pod = _pod(cluster, namespace)
    sidecars = [c for c in pod["spec"].get("initContainers", []) if c["name"] == "sluicegate-sidecar"]
    assert sidecars and sidecars[0]["restartPolicy"] == "Always"
    app_env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
    assert app_env["OPENAI_BASE_URL"] == "http://127.0.0.1:8470/v1"

    exec_app = ["exec", *ns, pod["metadata"]["name"], "-c", "app", "--", "python", "-c"]
    reply = json.loads(cluster("kubectl", *exec_app, CALL))
    assert reply["status"] == 200, reply
    assert reply["headers"]["x-sluicegate-routed-model"].startswith("mock/")
    assert float(reply["headers"]["x-sluicegate-cost-usd"]) > 0
    assert reply["body"]["choices"][0]["message"]["content"]

    metrics = cluster("kubectl", *exec_app, METRICS)
    spend = [line for line in metrics.splitlines() if line.startswith("sluicegate_spend_usd_total{")]
    assert any('team="e2e"' in line and float(line.rsplit(" ", 1)[1]) > 0 for line in spend), spend

    def spent() -> bool:
        policy = json.loads(cluster("kubectl", "get", "budgetpolicy", "namespace-monthly", *ns, "-o", "json"))
        windows = (policy.get("status") or {}).get("windows") or []
        return bool(windows) and float(windows[0].get("spentUSD") or 0) > 0

    _eventually("BudgetPolicy namespace-monthly to show the spend in its status", spent, timeout=300)


def test_upgrade_keeps_the_generated_webhook_certificate(
    cluster: Callable[..., str], installed: None
) -> None:
    def certificate() -> str:
        args = [
            "get",
            "secret",
            "sluicegate-webhook-tls",
            "-n",
            OPERATOR_NS,
            "-o",
            "jsonpath={.data.tls\\.crt}",
        ]
        return cluster("kubectl", *args)

    before = certificate()
    _helm_upgrade(cluster)
    assert certificate() == before
    config = json.loads(cluster("kubectl", "get", "mutatingwebhookconfiguration", "sluicegate", "-o", "json"))
    secret = json.loads(
        cluster("kubectl", "get", "secret", "sluicegate-webhook-tls", "-n", OPERATOR_NS, "-o", "json")
    )
    assert config["webhooks"][0]["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
