"""The fleet budget authority in the chart: its database URL from a named Secret or a quickstart
PostgreSQL, served by the operator on the key service's Service and certificate, injected into sidecars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHART = Path(__file__).resolve().parents[2] / "charts" / "sluicegate"
NAMESPACE = "sluicegate-system"
NAMED = {"authority": {"enabled": True, "database": {"secretRef": {"name": "budget-db", "key": "dsn"}}}}
QUICKSTART = {"authority": {"enabled": True, "postgresql": {"enabled": True}}}


def _container(manifest: Any) -> dict[str, Any]:
    pod = manifest.one("Deployment", "sluicegate-operator")["spec"]["template"]["spec"]
    return pod["containers"][0]


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_by_default_there_is_no_authority_no_database_and_sidecars_get_no_budget_authority(
    render: Any,
) -> None:
    manifest = render()
    container = _container(manifest)
    assert "--database-url" not in container["args"] and "--sidecar-budget-authority" not in container["args"]
    assert "SLUICEGATE_DATABASE_URL" not in {e["name"] for e in container["env"]}
    assert manifest.find("StatefulSet") == []
    ports = manifest.one("Service", "sluicegate-keys")["spec"]["ports"]
    assert [p["name"] for p in ports] == ["https"]


def test_the_operator_reads_the_database_url_from_the_secret_the_user_names(render: Any) -> None:
    manifest = render(NAMED)
    container = _container(manifest)
    (env,) = [e for e in container["env"] if e["name"] == "SLUICEGATE_DATABASE_URL"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "budget-db", "key": "dsn"}
    assert manifest.find("StatefulSet") == []  # no quickstart database
    assert manifest.find("Secret", "sluicegate-authority-db") == []


def test_the_authority_is_served_over_tls_on_the_key_services_port_and_sidecars_are_pointed_at_it(
    render: Any,
) -> None:
    manifest = render(NAMED)
    args = _container(manifest)["args"]
    assert _flag(args, "--authority-port") == "8480"
    assert _flag(args, "--authority-cert") == "/etc/sluicegate/keyservice/tls.crt"
    assert _flag(args, "--authority-key") == "/etc/sluicegate/keyservice/tls.key"
    assert _flag(args, "--sidecar-budget-authority") == f"https://sluicegate-keys.{NAMESPACE}.svc:8480"
    assert _flag(args, "--lease-ttl-seconds") == "10"
    ports = {p["name"]: p for p in _container(manifest)["ports"]}
    assert ports["authority"]["containerPort"] == 8480
    service_ports = {p["name"]: p for p in manifest.one("Service", "sluicegate-keys")["spec"]["ports"]}
    assert (service_ports["authority"]["port"], service_ports["authority"]["targetPort"]) == (
        8480,
        "authority",
    )
    moved = render({"authority": {**NAMED["authority"], "port": 9480}})
    assert _flag(_container(moved)["args"], "--sidecar-budget-authority").endswith(":9480")


def test_the_quickstart_runs_one_postgresql_with_a_generated_password_and_hands_the_operator_its_url(
    render: Any,
) -> None:
    manifest = render(QUICKSTART)
    statefulset = manifest.one("StatefulSet", "sluicegate-authority-db")
    assert statefulset["spec"]["replicas"] == 1
    pod = statefulset["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    secret = manifest.one("Secret", "sluicegate-authority-db")["stringData"]
    assert len(secret["password"]) == 32
    assert secret["url"] == (
        f"postgresql://sluicegate:{secret['password']}@sluicegate-authority-db.{NAMESPACE}.svc:5432/sluicegate"
    )
    service = manifest.one("Service", "sluicegate-authority-db")
    assert service["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"]
    (env,) = [e for e in _container(manifest)["env"] if e["name"] == "SLUICEGATE_DATABASE_URL"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "sluicegate-authority-db", "key": "url"}


def test_an_enabled_authority_without_a_database_is_refused_with_a_message_saying_what_to_set(
    helm: Any,
) -> None:
    done = helm.run(
        "template", "x", str(CHART), "--values", "-", check=False,
        stdin=json.dumps({"authority": {"enabled": True}}),
    )  # fmt: skip
    assert done.returncode != 0
    assert "authority.database.secretRef.name" in done.stderr
