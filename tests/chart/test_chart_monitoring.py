"""Alert rules and the Grafana dashboard parse and query only metrics the sidecar really exports.

There is no promtool here, so `check_promql` is a tokenizer-level check, honest about its limits: it
verifies that every character forms a PromQL token, that (), {} and [] balance and nest, that label
matchers read `label op "string"` (regexes compiled with Python's re, close to but not exactly RE2),
that ranges are durations, that every called name is a known PromQL function or aggregation, that
binary operators have operands, and it extracts metric names. It does NOT type-check (instant vs range
vectors), check function arity, vector-matching rules or precedence. Exported names come from
`sluicegate_sidecar.metrics.METRIC_NAMES`, the one list the sidecar keeps true, plus the explicit
allow-list KUBE_STATE_METRICS: the few kube-state-metrics series the reconciliation alert reads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

_FUNCTION_NAMES = """
    abs absent absent_over_time avg_over_time ceil changes clamp clamp_max clamp_min count_over_time
    day_of_month day_of_week day_of_year days_in_month delta deriv exp floor histogram_avg histogram_count
    histogram_fraction histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour
    idelta increase irate label_join label_replace last_over_time ln log10 log2 mad_over_time max_over_time
    min_over_time minute month predict_linear present_over_time quantile_over_time rate resets round scalar
    sgn sort sort_desc sort_by_label sort_by_label_desc sqrt stddev_over_time stdvar_over_time sum_over_time
    time timestamp vector year
"""
_AGGREGATION_NAMES = (
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio"
)
_KEYWORD_NAMES = "by without on ignoring group_left group_right bool and or unless offset atan2 inf nan"
FUNCTIONS = frozenset(_FUNCTION_NAMES.split())
AGGREGATIONS = frozenset(_AGGREGATION_NAMES.split())
KEYWORDS = frozenset(_KEYWORD_NAMES.split())
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
BINARY = {"+", "-", "*", "/", "%", "^", "==", "!=", "<=", ">=", "<", ">", "and", "or", "unless", "atan2"}
MATCH_OPS = {"=", "!=", "=~", "!~"}
GRAFANA_VARIABLES = re.compile(r"\$(__rate_interval|__interval|__range|__range_s|__range_ms)\b")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_D = r"(?:[0-9]+(?:ms|s|m|h|d|w|y))+"
RANGE = re.compile(rf"^{_D}(?::(?:{_D})?)?$")  # [5m] or a subquery [1h:5m] / [1h:]
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<expr>.*),\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\)$")
TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<duration>[0-9]+(?:ms|s|m|h|d|w|y)(?:[0-9]+(?:ms|s|m|h|d|w|y))*(?![A-Za-z0-9_]))
    | (?P<number>0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<op>=~|!~|==|!=|<=|>=|[-+*/%^<>=,@:])
    | (?P<bracket>[(){}\[\]])
    )""",
    re.VERBOSE,
)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Not the sidecar's: kube-state-metrics' Job series, read by SluicegateReconcileFailed (reports.reconcile).
KUBE_STATE_METRICS = frozenset(
    {"kube_job_status_failed", "kube_job_status_succeeded", "kube_job_status_start_time"}
)
RECONCILE_ON = {
    "enabled": True,
    "export": {"fetch": {"adminKeySecret": {"name": "openai-admin"}}},
    "ledgers": {"database": {"urlSecret": {"name": "ledger-db"}}},
}


class PromQLError(ValueError):
    pass


def _tokens(expr: str) -> list[tuple[str, str]]:
    text = GRAFANA_VARIABLES.sub("5m", expr)
    text = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "x", text)  # dashboard variables inside strings
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise PromQLError(f"unexpected character at {pos}: {text[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _check_matchers(tokens: list[tuple[str, str]]) -> None:
    """tokens between { and }: label op "string" (, ...)*, a trailing comma allowed."""
    i = 0
    while i < len(tokens):
        if i + 3 > len(tokens):
            raise PromQLError(f"incomplete label matcher: {tokens[i:]}")
        (k1, label), (k2, op), (k3, value) = tokens[i : i + 3]
        if k1 != "ident" or k2 != "op" or op not in MATCH_OPS or k3 != "string":
            raise PromQLError(f"bad label matcher: {label} {op} {value}")
        if op in {"=~", "!~"}:
            try:
                re.compile(value[1:-1].replace("\\\\", "\\"))
            except re.error as error:
                raise PromQLError(f"bad regex {value}: {error}") from error
        i += 3
        if i < len(tokens):
            if tokens[i] != ("op", ","):
                raise PromQLError(f"expected ',' between matchers, got {tokens[i][1]!r}")
            i += 1


def check_promql(expr: str) -> set[str]:
    """Check `expr` at the token level (see the module docstring) and return the metric names it reads."""
    tokens = _tokens(expr)
    if not tokens:
        raise PromQLError("empty expression")
    metrics: set[str] = set()
    stack: list[tuple[str, int]] = []
    pairs = {")": "(", "}": "{", "]": "["}
    label_list_depth: int | None = None
    previous: tuple[str, str] = ("start", "")
    for index, (kind, value) in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else ("end", "")
        in_braces = bool(stack) and stack[-1][0] == "{"
        in_brackets = bool(stack) and stack[-1][0] == "["
        if kind == "bracket":
            if value in "({[":
                if value == "(" and previous[1] in LABEL_LIST_KEYWORDS:
                    label_list_depth = len(stack) + 1
                stack.append((value, index))
            else:
                if not stack or stack[-1][0] != pairs[value]:
                    raise PromQLError(f"unbalanced {value!r} at token {index}")
                opened = stack.pop()[1]
                inner = tokens[opened + 1 : index]
                if value == "}":
                    _check_matchers(inner)
                if value == "]" and not RANGE.match("".join(v for _, v in inner)):
                    raise PromQLError(f"range is not a duration or subquery: {[v for _, v in inner]}")
                if value == ")" and label_list_depth == len(stack) + 1:
                    if any(k not in {"ident"} and v != "," for k, v in inner):
                        raise PromQLError(f"label list holds more than labels: {[v for _, v in inner]}")
                    label_list_depth = None
        elif kind == "ident" and not in_braces and not in_brackets and label_list_depth is None:
            lowered = value.lower()
            if (
                value in AGGREGATIONS
                and following[0] == "ident"
                and following[1].lower() in {"by", "without"}
            ):
                pass  # `sum by (labels) (expr)`
            elif following == ("bracket", "(") and lowered not in BINARY:  # `or (`: an operand
                if value not in FUNCTIONS | AGGREGATIONS and lowered not in LABEL_LIST_KEYWORDS:
                    raise PromQLError(f"unknown function {value!r}")
            elif lowered in KEYWORDS:
                if lowered in BINARY and previous[0] in {"start", "op"} | (
                    {"bracket"} if previous[1] in "({[," else set()
                ):
                    raise PromQLError(f"{value!r} has no left operand")
            elif previous[1] != "offset":
                metrics.add(value)
        elif kind == "op" and value in BINARY and not in_braces:
            unary = value in {"+", "-"}
            if not unary and (previous[0] in {"start", "op"} or previous[1] in {"(", "{", "[", ","}):
                raise PromQLError(f"operator {value!r} has no left operand")
            if following[0] == "end":
                raise PromQLError(f"operator {value!r} has no right operand")
        previous = (kind, value)
    if stack:
        raise PromQLError(f"unclosed {stack[-1][0]!r}")
    return metrics


def _exported_names() -> set[str]:
    try:
        from sluicegate_sidecar.metrics import METRIC_NAMES
    except ImportError as error:
        pytest.skip(f"sluicegate_sidecar.metrics.METRIC_NAMES is not importable yet: {error}")
    return set(METRIC_NAMES)


def _unexported(names: set[str], exported: set[str]) -> set[str]:
    def known(name: str) -> bool:
        return name in exported or any(
            name.endswith(s) and name[: -len(s)] in exported for s in HISTOGRAM_SUFFIXES
        )

    return {n for n in names if not known(n)}


# The checker itself: it must catch what it claims to catch.
@pytest.mark.parametrize(
    "bad",
    [
        "sum(rate(sluicegate_requests_total[5m])",
        "sum(rate(sluicegate_requests_total[5m]))) ",
        'rate(sluicegate_requests_total{status=~"5.."]',
        'sluicegate_requests_total{status ~ "5.."}',
        "sluicegate_requests_total{status=502}",
        "rate(sluicegate_requests_total[five])",
        "summ(sluicegate_requests_total)",
        "sluicegate_requests_total / / 2",
        "sluicegate_requests_total >",
        "sum by (namespace, 3) (sluicegate_requests_total)",
        'sluicegate_requests_total{status=~"(5"}',
        "sluicegate_requests_total # comment",
        "",
    ],
)
def test_promql_check_refuses_malformed_expressions(bad: str) -> None:
    with pytest.raises(PromQLError):
        check_promql(bad)


def test_promql_check_extracts_metrics_but_not_labels_functions_or_keywords() -> None:
    expr = (
        'sum by (namespace, le) (rate(a_bucket{team=~"$team",x!="y"}[$__rate_interval])) '
        "/ on (namespace) group_left max without (pod) (b_total offset 5m) > bool 0.5 "
        "and -c[1h:5m] or vector(1e3)"
    )
    assert check_promql(expr) == {"a_bucket", "b_total", "c"}
    assert check_promql("(a > on (x) b) or (c unless on (x) d) and(e)") == {"a", "b", "c", "d", "e"}


def test_promql_check_names_unexported_metrics() -> None:
    assert _unexported({"x_bucket", "x", "y_total"}, {"x"}) == {"y_total"}


def _rules(render: Any, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rule = render(values or {"monitoring": {"enabled": True}}).one("PrometheusRule", "sluicegate")
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


def test_every_alert_expression_parses_and_reads_only_exported_metrics(render: Any) -> None:
    exported = _exported_names() | KUBE_STATE_METRICS
    values = {"monitoring": {"enabled": True}, "reports": {"reconcile": RECONCILE_ON}}
    rules = _rules(render, values)
    assert "SluicegateReconcileFailed" in {r["alert"] for r in rules}
    for rule in rules:
        names = check_promql(rule["expr"])
        assert names, f"{rule['alert']} reads no metric"
        assert not _unexported(names, exported), f"{rule['alert']} reads {_unexported(names, exported)}"


def test_budget_alerts_fire_at_each_threshold_on_spend_summed_over_replicas(render: Any) -> None:
    budget = [r for r in _rules(render) if r["alert"].startswith("SluicegateBudget")]
    assert [(r["alert"], r["labels"]["severity"]) for r in budget] == [
        ("SluicegateBudget50Percent", "info"),
        ("SluicegateBudget80Percent", "warning"),
        ("SluicegateBudget100Percent", "critical"),
    ]
    for rule, fraction in zip(budget, ["0.5", "0.8", "1"], strict=True):
        expr = " ".join(rule["expr"].split())
        assert "sum by (namespace, policy, scope, window) (sluicegate_budget_spent_usd)" in expr
        assert "max by (namespace, policy, scope, window) (sluicegate_budget_limit_usd > 0)" in expr
        assert expr.endswith(f">= {fraction}")


def test_budget_thresholds_come_from_values(render: Any) -> None:
    values = {
        "monitoring": {"enabled": True},
        "budgetAlerts": {"thresholds": [{"fraction": 0.9, "severity": "critical"}], "for": "15m"},
    }
    budget = [r for r in _rules(render, values) if r["alert"].startswith("SluicegateBudget")]
    assert [(r["alert"], r["for"], r["expr"].split()[-1]) for r in budget] == [
        ("SluicegateBudget90Percent", "15m", "0.9")
    ]


def test_config_rejected_and_upstream_error_alerts_exist(render: Any) -> None:
    rules = {r["alert"]: r for r in _rules(render)}
    assert "sluicegate_config_rejected_total" in check_promql(rules["SluicegateConfigRejected"]["expr"])
    upstream = rules["SluicegateUpstreamErrors"]["expr"]
    assert check_promql(upstream) == {"sluicegate_requests_total"}
    assert 'status=~"502|504"' in upstream and upstream.rstrip().endswith("> 0.05")


def test_upstream_usage_anomalies_alert_on_any_increase_per_provider_and_reason(render: Any) -> None:
    """fault 30: usage no correct provider reports is counted, and alerted."""
    rule = {r["alert"]: r for r in _rules(render)}["SluicegateUpstreamUsageAnomalies"]
    assert check_promql(rule["expr"]) == {"sluicegate_usage_anomalies_total"}
    assert "provider, reason" in rule["expr"] and rule["expr"].rstrip().endswith("> 0")


def test_alert_annotations_keep_prometheus_templates_for_prometheus(render: Any) -> None:
    rule = next(r for r in _rules(render) if r["alert"] == "SluicegateBudget80Percent")
    assert "{{ $labels.policy }}" in rule["annotations"]["description"]


def _dashboard(render: Any) -> dict[str, Any]:
    config_map = render({"monitoring": {"enabled": True}}).one("ConfigMap", "sluicegate-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    return json.loads(config_map["data"]["sluicegate.json"])


POSTGRES = "grafana-postgresql-datasource"


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_is_valid_json_with_unique_ids_and_a_sane_grid(render: Any) -> None:
    dashboard = _dashboard(render)
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_every_dashboard_query_parses_and_names_an_exported_metric(render: Any) -> None:
    exported = _exported_names()
    dashboard = _dashboard(render)
    for panel in _panels(dashboard):
        assert panel["targets"], f"panel {panel['title']} has no query"
        if panel["datasource"]["type"] == POSTGRES:
            continue  # the fleet ledger's panels: test_ledger_panels_query_the_fleet_ledger_in_postgresql
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            names = check_promql(target["expr"])
            assert names, f"panel {panel['title']} queries no metric"
            assert not _unexported(names, exported), (
                f"panel {panel['title']} reads {_unexported(names, exported)}"
            )
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = LABEL_VALUES.match(variable["query"]["query"])  # Grafana's label_values(series, label)
            assert query and query["expr"], f"variable {variable['name']} is not label_values(series, label)"
            names = check_promql(query["expr"])
            assert names and not _unexported(names, exported), variable["name"]


def test_dashboard_shows_spend_budgets_verdicts_fallbacks_and_overhead(render: Any) -> None:
    exprs = [" ".join(t.get("expr", "").split()) for p in _panels(_dashboard(render)) for t in p["targets"]]

    def shown(*fragments: str) -> bool:
        return any(all(f in e for f in fragments) for e in exprs)

    assert shown("sum by (team)", "sluicegate_spend_usd_total")
    assert shown("sum by (service)", "sluicegate_spend_usd_total")
    assert shown("model)", "sluicegate_spend_usd_total")
    assert shown("sluicegate_budget_spent_usd", "sluicegate_budget_limit_usd")
    assert shown("sum by (verdict)", "sluicegate_requests_total")
    assert shown("sluicegate_fallbacks_total")
    assert shown("histogram_quantile", "sluicegate_overhead_seconds_bucket")


def _grafana_sql(text: str) -> str:
    """Grafana's PostgreSQL macros and variables as Grafana expands them (all namespaces, 2026-03)."""
    text = text.replace(
        "$__timeFilter(time)", "time BETWEEN '2026-03-01T00:00:00Z' AND '2026-04-01T00:00:00Z'"
    )
    text = text.replace("$__timeGroupAlias(time, '1h')", "date_trunc('hour', time) AS time")
    return text.replace("${namespace:regex}", ".*")


def test_ledger_panels_query_the_fleet_ledger_in_postgresql(render: Any, database_url: str) -> None:
    import psycopg

    from tests.support.ledger_db import load_ledgers

    load_ledgers(database_url, {"sidecar-a": Path(__file__).parents[1] / "reports" / "data" / "recon-ledger"})
    dashboard = _dashboard(render)
    ledger_panels = [p for p in _panels(dashboard) if p["datasource"]["type"] == POSTGRES]
    assert {p["title"] for p in ledger_panels} >= {"Spend per end customer in range"}
    assert {"name": "ledgerdb", "type": "datasource", "query": POSTGRES}.items() <= next(
        v for v in dashboard["templating"]["list"] if v["name"] == "ledgerdb"
    ).items()
    with psycopg.connect(database_url) as conn:
        total = conn.execute("SELECT sum(cost_micro_usd) / 1e6 FROM ledger_entries").fetchone()
        for panel in ledger_panels:
            assert panel["datasource"]["uid"] == "${ledgerdb}"
            for target in panel["targets"]:
                rows = conn.execute(_grafana_sql(target["rawSql"])).fetchall()
                assert rows, panel["title"]
                spend = sum(row[-1] for row in rows)
                assert spend == total[0], panel["title"]  # every entry of the range, once
