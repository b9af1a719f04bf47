"""The reconciliation CronJob (reports.reconcile): off by default, valid, locked down, and it really runs.

The last tests run the rendered containers' command lines on this machine, with only the mount paths
remapped: the init container's fetch script against a fake provider Admin API, then the real
`sluicegate report reconcile` on tests/reports/data's ledger, checking the exit status the alert relies on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import pytest

NAMESPACE = "sluicegate-system"
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "sluicegate"
DATA = REPO / "tests" / "reports" / "data"
ADMIN_KEY = "sk-admin-not-a-real-key"
DATABASE = {"database": {"urlSecret": {"name": "ledger-db"}}}
FETCH = {
    "enabled": True,
    "export": {"fetch": {"adminKeySecret": {"name": "openai-admin"}}},
    "ledgers": DATABASE,
}
VOLUME = {
    "enabled": True,
    "ledgers": DATABASE,
    "export": {
        "source": "volume",
        "volume": {"source": {"configMap": {"name": "march-export"}}, "files": ["costs.json", "usage.csv"]},
    },
}


def _cronjob(render: Any, reconcile: dict[str, Any], **values: Any) -> dict[str, Any]:
    return render({"reports": {"reconcile": reconcile}, **values}).one("CronJob", "sluicegate-reconcile")


def _pod(cronjob: dict[str, Any]) -> dict[str, Any]:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _main(cronjob: dict[str, Any]) -> dict[str, Any]:
    containers = _pod(cronjob)["containers"]
    assert [c["name"] for c in containers] == ["reconcile"]
    return containers[0]


def _flags(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == name]


def test_nothing_is_rendered_by_default(render: Any) -> None:
    assert render().find("CronJob") == []
    rule = render({"monitoring": {"enabled": True}}).one("PrometheusRule", "sluicegate")
    assert "sluicegate.reports" not in [g["name"] for g in rule["spec"]["groups"]]


@pytest.mark.parametrize("reconcile", [FETCH, VOLUME], ids=["fetch", "volume"])
def test_enabled_cronjob_is_valid_for_kubernetes(render: Any, reconcile: dict[str, Any]) -> None:
    cronjob = _cronjob(render, reconcile, imagePullSecrets=["regcred"])
    assert cronjob["metadata"]["namespace"] == NAMESPACE
    try:
        kubernetes_validate.validate(cronjob, "1.33", strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{'/'.join(str(p) for p in error.path)}: {error.message}")


def test_schedule_runs_once_a_day_after_the_providers_close_the_utc_day_and_never_retries(
    render: Any,
) -> None:
    spec = _cronjob(render, FETCH)["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == (
        "30 6 * * *",
        "Etc/UTC",
        "Forbid",
    )
    assert spec["jobTemplate"]["spec"]["backoffLimit"] == 0
    assert spec["failedJobsHistoryLimit"] >= 1
    assert _pod(_cronjob(render, FETCH))["restartPolicy"] == "Never"
    custom = _cronjob(render, {**FETCH, "schedule": "@daily", "timeZone": "", "suspend": True})["spec"]
    assert (custom["schedule"], custom["suspend"], "timeZone" in custom) == ("@daily", True, False)


def test_command_line_is_report_reconcile_with_the_configured_thresholds(render: Any) -> None:
    reconcile = {
        **FETCH,
        "thresholdUSD": 0.25,
        "thresholdPct": 5,
        "connections": ["openai-prod", "openai-eu"],
    }
    container = _main(
        _cronjob(render, reconcile, image={"repository": "registry.example/sg", "tag": "1.2.3"})
    )
    args = container["args"]
    assert container["command"] == ["sluicegate"] and args[:2] == ["report", "reconcile"]
    assert container["image"] == "registry.example/sg:1.2.3"
    assert _flags(args, "--threshold-usd") == ["0.25"] and _flags(args, "--threshold-pct") == ["5"]
    assert _flags(args, "--export") == ["/exports/costs.json", "/exports/usage.json"]
    assert _flags(args, "--connection") == ["openai-prod", "openai-eu"]
    assert not {"--pushgateway", "--metrics-file", "--html"} & set(args)
    large = _main(_cronjob(render, {**FETCH, "thresholdUSD": 1000000, "thresholdPct": 0.5}))["args"]
    assert (_flags(large, "--threshold-usd"), _flags(large, "--threshold-pct")) == (["1000000"], ["0.5"])


def test_by_default_the_fleet_ledger_is_read_from_postgresql_with_the_url_from_a_secret(render: Any) -> None:
    main = _main(_cronjob(render, FETCH))
    assert main["args"][2:4] == ["--database-url", "$(SLUICEGATE_DATABASE_URL)"]
    (env,) = [e for e in main.get("env", []) if e["name"] == "SLUICEGATE_DATABASE_URL"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "ledger-db", "key": "url"}
    assert "ledgers" not in {v["name"] for v in _pod(_cronjob(render, FETCH))["volumes"]}
    with pytest.raises(Exception, match="ledgers.database.urlSecret.name"):
        _cronjob(render, {**FETCH, "ledgers": {}})


def test_ledgers_come_read_only_from_the_claim_one_directory_per_sidecar(render: Any) -> None:
    default = _cronjob(render, {**FETCH, "ledgers": {"source": "volume"}})
    assert _main(default)["args"][2] == "/ledgers"
    reconcile = {
        **FETCH,
        "ledgers": {
            "source": "volume",
            "claimName": "collected",
            "paths": ["team-a/chat-0", "team-a/chat-1/"],
        },
    }
    cronjob = _cronjob(render, reconcile)
    assert _main(cronjob)["args"][2:4] == ["/ledgers/team-a/chat-0", "/ledgers/team-a/chat-1"]
    claim = next(v for v in _pod(cronjob)["volumes"] if v["name"] == "ledgers")["persistentVolumeClaim"]
    assert claim == {"claimName": "collected", "readOnly": True}
    mount = next(m for m in _main(cronjob)["volumeMounts"] if m["name"] == "ledgers")
    assert (mount["mountPath"], mount["readOnly"]) == ("/ledgers", True)


def test_pod_is_non_root_read_only_cannot_escalate_and_has_no_api_token(render: Any) -> None:
    pod = _pod(_cronjob(render, FETCH))
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    containers = pod["initContainers"] + pod["containers"]
    assert [c["name"] for c in containers] == ["fetch-export", "reconcile"]
    for container in containers:
        ctx = container["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 10001, container["name"]
        assert ctx["readOnlyRootFilesystem"] is True, container["name"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["privileged"] is False, container["name"]
        assert ctx["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert container["resources"]["limits"]["memory"] == "1Gi"


def test_admin_key_reaches_only_the_fetching_init_container(render: Any) -> None:
    reconcile = {
        **FETCH,
        "export": {"fetch": {"provider": "anthropic", "adminKeySecret": {"name": "ak", "key": "k"}}},
    }
    pod = _pod(_cronjob(render, reconcile))
    [fetch] = pod["initContainers"]
    assert fetch["env"] == [
        {"name": "SLUICEGATE_ADMIN_KEY", "valueFrom": {"secretKeyRef": {"name": "ak", "key": "k"}}}
    ]
    assert fetch["command"][-4:] == ["anthropic", "https://api.anthropic.com", "1", "/exports"]
    main_env = pod["containers"][0].get("env", [])  # only the ledger database's URL
    assert [e["valueFrom"]["secretKeyRef"]["name"] for e in main_env] == ["ledger-db"]


def test_an_export_on_a_volume_needs_no_init_container(render: Any) -> None:
    pod = _pod(_cronjob(render, VOLUME))
    assert "initContainers" not in pod
    assert _flags(pod["containers"][0]["args"], "--export") == ["/exports/costs.json", "/exports/usage.csv"]
    exports = next(v for v in pod["volumes"] if v["name"] == "exports")
    assert exports == {"name": "exports", "configMap": {"name": "march-export"}}


def test_result_goes_to_the_pushgateway_and_files_on_the_output_volume(render: Any) -> None:
    output = {
        "pushgateway": "http://pushgateway.monitoring.svc:9091",
        "volume": {"persistentVolumeClaim": {"claimName": "reports"}},
        "html": "reconcile.html",
        "metricsFile": "sluicegate_reconcile.prom",
    }
    pod = _pod(_cronjob(render, {**FETCH, "output": output}))
    args = pod["containers"][0]["args"]
    assert _flags(args, "--pushgateway") == ["http://pushgateway.monitoring.svc:9091"]
    assert _flags(args, "--metrics-file") == ["/reports/sluicegate_reconcile.prom"]
    assert _flags(args, "--html") == ["/reports/reconcile.html"]
    assert {"name": "reports", "persistentVolumeClaim": {"claimName": "reports"}} in pod["volumes"]
    assert {"name": "reports", "mountPath": "/reports"} in pod["containers"][0]["volumeMounts"]
    assert "reports" not in [v["name"] for v in _pod(_cronjob(render, FETCH))["volumes"]]


BAD_VALUES = [
    ({"schedule": 5}, "/reports/reconcile/schedule", "got number, want string"),
    ({"schedule": "every night"}, "/reports/reconcile/schedule", "does not match pattern"),
    ({"schedule": "CRON_TZ=UTC 30 6 * * *"}, "/reports/reconcile/schedule", "does not match pattern"),
    ({"scheduel": "30 6 * * *"}, "/reports/reconcile", "'scheduel' not allowed"),
    ({"export": {"source": "s3"}}, "/reports/reconcile/export/source", "'fetch', 'volume'"),
    ({"export": {"fetch": {"days": 0}}}, "/reports/reconcile/export/fetch/days", "minimum"),
    ({"export": {"fetch": {"apiKey": "x"}}}, "/reports/reconcile/export/fetch", "'apiKey' not allowed"),
    (
        {"ledgers": {"source": "volume", "paths": ["../etc"]}},
        "/reports/reconcile/ledgers/paths/0",
        "'not' failed",
    ),
    (
        {"ledgers": {"source": "volume", "paths": ["/abs"]}},
        "/reports/reconcile/ledgers/paths/0",
        "does not match pattern",
    ),
    ({"thresholdUSD": "1.00"}, "/reports/reconcile/thresholdUSD", "got string, want number"),
    ({"thresholdPct": -1}, "/reports/reconcile/thresholdPct", "minimum"),
    ({"failedJobsHistoryLimit": 0}, "/reports/reconcile/failedJobsHistoryLimit", "minimum"),
    ({"output": {"pushgateway": "pushgateway:9091"}}, "/reports/reconcile/output/pushgateway", "pattern"),
    ({"output": {"html": "../r.html"}}, "/reports/reconcile/output/html", "anyOf"),
]


@pytest.mark.parametrize(("reconcile", "where", "why"), BAD_VALUES, ids=[str(b[0]) for b in BAD_VALUES])
def test_schema_refuses_bad_values_naming_the_field(helm: Any, reconcile: Any, where: str, why: str) -> None:
    done = _template(helm, {"reports": {"reconcile": reconcile}})
    assert done.returncode != 0, f"helm accepted {reconcile}"
    assert "values don't meet the specifications of the schema" in done.stderr
    assert where in done.stderr and why in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("reconcile", "why"),
    [
        ({"enabled": True, "ledgers": DATABASE}, "adminKeySecret.name: name the Secret"),
        ({**FETCH, "ledgers": {}}, "ledgers.database.urlSecret.name: name the Secret"),
        ({**VOLUME, "export": {"source": "volume", "volume": {"files": ["c.json"]}}}, "give both source"),
        ({**FETCH, "output": {"metricsFile": "r.prom"}}, "output.volume: html and metricsFile need a volume"),
    ],
)
def test_incomplete_settings_fail_the_render_with_what_to_set(helm: Any, reconcile: Any, why: str) -> None:
    done = _template(helm, {"reports": {"reconcile": reconcile}})
    assert done.returncode != 0 and why in done.stderr, done.stderr


def _template(helm: Any, values: dict[str, Any]) -> Any:
    return helm.run("template", "x", str(CHART), "--values", "-", check=False, stdin=json.dumps(values))


def test_alert_fires_on_the_cronjobs_failed_jobs_in_the_release_namespace(render: Any) -> None:
    manifest = render({"monitoring": {"enabled": True}, "reports": {"reconcile": FETCH}})
    group = next(
        g for g in manifest.one("PrometheusRule")["spec"]["groups"] if g["name"] == "sluicegate.reports"
    )
    [rule] = group["rules"]
    assert rule["alert"] == "SluicegateReconcileFailed" and rule["labels"]["severity"] == "warning"
    expr = rule["expr"]
    assert "kube_job_status_failed" in expr and "kube_job_status_succeeded" in expr
    assert set(re.findall(r'namespace="([^"]*)"', expr)) == {NAMESPACE}
    [pattern] = set(re.findall(r'job_name=~"([^"]*)"', expr))
    # The CronJob controller names each Job <cronjob>-<scheduled time in minutes since the epoch>.
    job = f"{manifest.one('CronJob')['metadata']['name']}-{int(datetime.now(UTC).timestamp()) // 60}"
    assert re.fullmatch(pattern, job)
    assert not re.fullmatch(pattern, "sluicegate-reconcile-anthropic-29544690")
    assert "{{ $value | humanizeTimestamp }}" in rule["annotations"]["description"]


# -- running the rendered containers ----------------------------------------------------------------


class _ProviderAPI(ThreadingHTTPServer):
    """A fake Admin API: serves `pages[path]` one page per request, following `page=` cursors."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pages: dict[str, list[dict[str, Any]]] = {}
        self.status = 200
        self.seen: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _ProviderAPI

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self.server.seen.append((url.path, query, {k.lower(): v for k, v in self.headers.items()}))
        pages = self.server.pages.get(url.path)
        if self.server.status != 200:
            body, status = b'{"error": {"message": "invalid admin key"}}', self.server.status
        elif pages is None:
            body, status = b'{"error": {"message": "no such report"}}', 404
        else:
            index = int(query.get("page", ["p0"])[0][1:])
            more = index + 1 < len(pages)
            page = {**pages[index], "has_more": more, "next_page": f"p{index + 1}" if more else None}
            body, status = json.dumps(page).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def provider_api() -> Iterator[_ProviderAPI]:
    server = _ProviderAPI()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _local(argv: list[str], mounts: dict[str, Path]) -> list[str]:
    """The container's argv with its mount paths replaced by local directories."""
    out = []
    for arg in argv:
        for mount, local in mounts.items():
            if arg == mount or arg.startswith(mount + "/"):
                arg = str(local) + arg[len(mount) :]
        out.append(arg)
    return out


def _fetch(pod: dict[str, Any], exports: Path, env_key: str = ADMIN_KEY) -> subprocess.CompletedProcess[str]:
    [init] = pod["initContainers"]
    argv = _local(init["command"], {"/exports": exports})
    assert argv[0] == "python"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SLUICEGATE_ADMIN_KEY": env_key + "\n"}
    return subprocess.run(
        [sys.executable, *argv[1:]], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def _midnights() -> set[datetime]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {today, today + timedelta(days=1)}  # the run may straddle midnight


def _load(name: str) -> dict[str, Any]:
    page: dict[str, Any] = json.loads((DATA / name).read_text())
    return page


def test_fetched_openai_export_fails_the_run_on_a_gap_over_the_threshold(
    render: Any, provider_api: _ProviderAPI, tmp_path: Path
) -> None:
    costs = _load("openai-costs.json")
    provider_api.pages = {
        "/v1/organization/costs": [
            {**costs, "data": costs["data"][:1]},
            {**costs, "data": costs["data"][1:]},
        ],
        "/v1/organization/usage/completions": [_load("openai-usage.json")],
    }
    output = {"volume": {"emptyDir": {}}, "metricsFile": "reconcile.prom", "html": "reconcile.html"}
    reconcile = {
        **FETCH,
        "export": {"fetch": {"adminKeySecret": {"name": "k"}, "days": 2, "baseURL": provider_api.url}},
        "ledgers": {"source": "volume", "claimName": "ledgers", "paths": ["recon-ledger"]},
        "output": output,
    }
    exports, reports = tmp_path / "exports", tmp_path / "reports"
    exports.mkdir()
    reports.mkdir()

    fetched = _fetch(_pod(_cronjob(render, {**reconcile, "thresholdUSD": 0.10})), exports)
    assert fetched.returncode == 0, fetched.stderr
    assert ADMIN_KEY not in fetched.stdout + fetched.stderr
    assert [(path, q.get("page")) for path, q, _ in provider_api.seen] == [
        ("/v1/organization/costs", None),
        ("/v1/organization/costs", ["p1"]),
        ("/v1/organization/usage/completions", None),
    ]
    for path, query, headers in provider_api.seen:
        assert headers["authorization"] == f"Bearer {ADMIN_KEY}"
        end = datetime.fromtimestamp(int(query["end_time"][0]), UTC)
        assert end in _midnights() and int(query["start_time"][0]) == int(end.timestamp()) - 2 * 86400
        assert query["bucket_width"] == ["1d"] and query["limit"] == ["2"]
        assert query["group_by"] == (["line_item"] if path.endswith("costs") else ["model"])
    assert len(json.loads((exports / "costs.json").read_text())) == 2

    sluicegate = shutil.which("sluicegate", path=str(Path(sys.executable).parent))
    assert sluicegate, "the sluicegate console script is not installed in the venv"
    mounts = {"/ledgers": DATA, "/exports": exports, "/reports": reports}
    for threshold, status in [(0.10, 1), (0.50, 0)]:
        main = _main(_cronjob(render, {**reconcile, "thresholdUSD": threshold}))
        argv = _local([*main["command"], *main["args"]], mounts)
        done = subprocess.run(
            [sluicegate, *argv[1:]], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == status, done.stderr
        assert ("gap over threshold, largest 2026-03-03 gpt-4o" in done.stderr) == (status == 1)
        assert f"sluicegate_reconcile_failed {status}\n" in (reports / "reconcile.prom").read_text()
        assert "<svg" in (reports / "reconcile.html").read_text()


def test_fetch_sends_anthropics_headers_and_rfc3339_window(
    render: Any, provider_api: _ProviderAPI, tmp_path: Path
) -> None:
    from sluicegate_reports.exports import parse_export

    provider_api.pages = {
        "/v1/organizations/cost_report": [_load("anthropic-cost-report.json")],
        "/v1/organizations/usage_report/messages": [_load("anthropic-usage-report.json")],
    }
    fetch = {"provider": "anthropic", "adminKeySecret": {"name": "k"}, "baseURL": provider_api.url + "/"}
    fetched = _fetch(_pod(_cronjob(render, {**FETCH, "export": {"fetch": fetch}})), tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    for path, query, headers in provider_api.seen:
        assert headers["x-api-key"] == ADMIN_KEY and headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in headers
        end = datetime.strptime(query["ending_at"][0], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        start = datetime.strptime(query["starting_at"][0], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert end in _midnights() and end - start == timedelta(days=1)
        assert query["group_by[]"] == (["description"] if path.endswith("cost_report") else ["model"])
    for name in ("costs.json", "usage.json"):
        assert parse_export(name, (tmp_path / name).read_bytes()).provider == "anthropic"


def test_a_refused_admin_key_fails_the_fetch_at_once_without_printing_the_key(
    render: Any, provider_api: _ProviderAPI, tmp_path: Path
) -> None:
    provider_api.status = 401
    fetch = {"adminKeySecret": {"name": "k"}, "baseURL": provider_api.url}
    fetched = _fetch(_pod(_cronjob(render, {**FETCH, "export": {"fetch": fetch}})), tmp_path)
    assert fetched.returncode != 0
    assert "HTTP 401" in fetched.stderr and "invalid admin key" in fetched.stderr
    assert ADMIN_KEY not in fetched.stdout + fetched.stderr
    assert len(provider_api.seen) == 1, "a refused key is not retried"
    assert not (tmp_path / "costs.json").exists()


def test_the_rendered_job_reconciles_the_fleet_ledger_in_postgresql(render: Any, database_url: str) -> None:
    """The container's command line as the kubelet runs it ($(VAR) expanded from the Secret's value)."""
    from tests.support.ledger_db import load_ledgers

    load_ledgers(database_url, {"sidecar-a": DATA / "recon-ledger"})
    volume = {
        "source": {"configMap": {"name": "export"}},
        "files": ["openai-costs.json", "openai-usage.json"],
    }
    reconcile = {**FETCH, "export": {"source": "volume", "volume": volume}}
    sluicegate = shutil.which("sluicegate", path=str(Path(sys.executable).parent))
    assert sluicegate, "the sluicegate console script is not installed in the venv"
    for threshold, status in [(0.10, 1), (0.50, 0)]:
        main = _main(_cronjob(render, {**reconcile, "thresholdUSD": threshold}))
        env = {e["name"]: database_url for e in main["env"]}
        argv = [
            re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in [*main["command"], *main["args"]]
        ]
        done = subprocess.run(
            [sluicegate, *_local(argv, {"/exports": DATA})[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == status, done.stderr
        assert ("gap over threshold, largest 2026-03-03 gpt-4o" in done.stderr) == (status == 1)
