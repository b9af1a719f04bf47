"""The injected sidecar's Pod contract: what the webhook writes into the Pod and the sidecar reads back.

Env names, ports, mount paths and the budget gauge names the operator scrapes. Both sides import these
names; neither spells them again.
"""

from __future__ import annotations

API_PORT = 8470  # the app's API, 127.0.0.1 only
OPS_PORT = 9470  # /metrics /healthz /readyz, on the Pod IP

CONFIG_DIR = "/etc/sluicegate/config"  # the sealed config Secret (config.json, config.sig)
PODINFO_DIR = "/etc/sluicegate/podinfo"  # downward API: the Pod's labels
LABELS_FILE = "labels"  # in PODINFO_DIR
TOKEN_DIR = "/var/run/secrets/sluicegate"  # noqa: S105  (a path, not a secret)
TOKEN_NAME = "token"  # noqa: S105  the projected token file in TOKEN_DIR
TOKEN_FILE = f"{TOKEN_DIR}/{TOKEN_NAME}"
TOKEN_AUDIENCE = "sluicegate"  # noqa: S105  the projected ServiceAccount token's audience
LEDGER_DIR = "/var/lib/sluicegate/ledger"

ENV_SIGNING_PUBLIC_KEYS = "SLUICEGATE_SIGNING_PUBLIC_KEYS"  # JSON {key id: public key}
ENV_POD_NAMESPACE = "SLUICEGATE_POD_NAMESPACE"
ENV_POD_NAME = "SLUICEGATE_POD_NAME"
ENV_SERVICE_ACCOUNT = "SLUICEGATE_SERVICE_ACCOUNT"
ENV_WORKLOAD = "SLUICEGATE_WORKLOAD"
ENV_PODINFO_DIR = "SLUICEGATE_PODINFO_DIR"
ENV_API_PORT = "SLUICEGATE_API_PORT"
ENV_DEFAULT_TIER = "SLUICEGATE_DEFAULT_TIER"
ENV_KEY_SERVICE_CA = "SLUICEGATE_KEY_SERVICE_CA"  # PEM

# The budget gauges on OPS_PORT's /metrics, labelled policy, scope and window (verdict: policy, scope,
# verdict; policy spent: policy, window); the operator sums them into BudgetPolicy status. A split
# policy's scope is "max", its most-used split value (split values are never labels).
GAUGE_BUDGET_LIMIT = "sluicegate_budget_limit_usd"
GAUGE_BUDGET_SPENT = "sluicegate_budget_spent_usd"
GAUGE_BUDGET_REMAINING = "sluicegate_budget_remaining_usd"
GAUGE_BUDGET_VERDICT = "sluicegate_budget_verdict"
GAUGE_BUDGET_POLICY_SPENT = "sluicegate_budget_policy_spent_usd"
