"""``sluicegate operator``: the command line of the operator (``operator_run`` runs it)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sluicegate_contract.sidecarpod import OPS_PORT

from .alerttargets import AllowListError, WebhookPolicy
from .authority.hosted import HostedAuthority
from .injection import InjectionError, sidecar_resources
from .keyservice import server_tls
from .operator_run import Listener, RunOptions, run
from .scheduler import ScheduleSettings
from .spendscrape import SpendSettings

DESCRIPTION = """\
Run the Sluicegate operator: it watches ProviderConnection, RoutingTier and BudgetPolicy resources
and the Secrets they name, and writes a signed `sluicegate-config` Secret into each namespace.

Running it locally against a cluster (kind, minikube, a dev cluster):
  kubectl apply -f crds/                          # the CRDs, once
  kubectl create namespace sluicegate-system      # where the operator keeps its keys
  sluicegate operator --namespace default --standalone
It uses the current context of $KUBECONFIG (or ~/.kube/config); pick another with
--kubeconfig/--context. Inside a Pod it uses its ServiceAccount. Your kubeconfig user needs to
read/write Secrets in the watched namespaces and in --operator-namespace, to patch the CRs' status, and
to list Pods: every --spend-interval-seconds it reads the spend of each injected Pod's sidecar from
http://<pod IP>:9470/metrics into BudgetPolicy status (from outside the cluster Pod IPs are usually
unreachable: the SpendReported condition says so; 0 turns this off).
Without --webhook-cert/--webhook-key no admission webhook is served (Pods are not injected, CRs are
checked by the CRDs' own rules only); without --keyservice-cert/--keyservice-key no key service runs.
With $SLUICEGATE_DATABASE_URL (or --database-url) every replica also serves the fleet budget authority
on --authority-port (HTTPS with --authority-cert/--authority-key) for the budgets of the config Secrets
it renders, and BudgetPolicy status is read from the authority's accounts instead of sidecar metrics.
"""

EPILOG = """\
examples:
  sluicegate operator --namespace team-a --namespace team-b --standalone
  sluicegate operator --all-namespaces --kubeconfig ~/.kube/kind --context kind-kind --standalone
  sluicegate operator --all-namespaces --webhook-cert tls/tls.crt --webhook-key tls/tls.key \\
      --keyservice-cert tls/tls.crt --keyservice-key tls/tls.key --sidecar-image IMAGE
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluicegate operator",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", action="append", default=[], metavar="NS", help="watch NS (repeatable)")
    scope.add_argument("--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--operator-namespace", default="sluicegate-system", help="where keys live (%(default)s)"
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    for name, port, what in (
        ("webhook", 9443, "admission webhook"),
        ("keyservice", 8443, "data-key service"),
    ):
        parser.add_argument(f"--{name}-addr", default="0.0.0.0", help=f"{what} listen address (%(default)s)")
        parser.add_argument(f"--{name}-port", type=int, default=port, help=f"{what} port (%(default)s)")
        parser.add_argument(f"--{name}-cert", help=f"{what} TLS certificate (PEM); enables it")
        parser.add_argument(f"--{name}-key", help=f"{what} TLS private key (PEM)")
    parser.add_argument(
        "--sidecar-image", default=os.environ.get("SLUICEGATE_IMAGE", ""), help="image injected"
    )
    parser.add_argument("--keyservice-ca", help="CA bundle (PEM) that sidecars use to verify the key service")
    parser.add_argument("--standalone", action="store_true", help="no kopf peering (one replica, local runs)")
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL ('' off)"
    )
    parser.add_argument(
        "--resync-seconds", type=float, default=600.0, help="re-check every namespace this often"
    )
    parser.add_argument(
        "--list-page-size",
        type=int,
        default=500,
        help="objects per page when the CRs and Secrets are listed at a (re)start (%(default)s)",
    )
    parser.add_argument(
        "--reconcile-workers", type=int, default=8, help="namespaces reconciled at once (%(default)s)"
    )
    parser.add_argument(
        "--wave-rate",
        type=float,
        default=25.0,
        help="background reconciles (restart, resync, signing-key change) started per second, at most; "
        "a tenant's edit goes ahead of them (%(default)s)",
    )
    parser.add_argument(
        "--spend-namespaces-per-second",
        type=float,
        default=10.0,
        help="the spend refresh visits at most this many namespaces a second (%(default)s)",
    )
    parser.add_argument(
        "--spend-interval-seconds",
        type=float,
        default=30.0,
        help="scrape the sidecars and refresh BudgetPolicy spend this often; 0 turns it off (%(default)s)",
    )
    parser.add_argument(
        "--sidecar-metrics-port", type=int, default=OPS_PORT, help="the sidecars' metrics port (%(default)s)"
    )
    parser.add_argument(
        "--alert-webhook-allow",
        action="append",
        default=[],
        metavar="HOST|*.SUFFIX|CIDR",
        help="an alert webhook target allowed besides public https hosts: may be cluster-internal or "
        "private and use plain http (repeatable; the chart's operator.alertWebhooks.allow)",
    )
    parser.add_argument(
        "--cluster-cidr",
        action="append",
        default=[],
        metavar="CIDR",
        help="the cluster's Pod and Service ranges: alert webhooks resolving into them are refused "
        "like private addresses (repeatable; the chart's operator.alertWebhooks.clusterCIDRs)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SLUICEGATE_DATABASE_URL", ""),
        help="PostgreSQL URL of the fleet budget authority (default: $SLUICEGATE_DATABASE_URL); enables it",
    )
    parser.add_argument(
        "--authority-addr", default="0.0.0.0", help="budget authority listen address (%(default)s)"
    )
    parser.add_argument(
        "--authority-port", type=int, default=8480, help="budget authority port (%(default)s)"
    )
    parser.add_argument("--authority-cert", help="budget authority TLS certificate (PEM); plain HTTP without")
    parser.add_argument("--authority-key", help="budget authority TLS private key (PEM)")
    parser.add_argument(
        "--sidecar-budget-authority",
        metavar="URL",
        help="the budget authority URL injected sidecars get (fleet mode; the chart sets it)",
    )
    parser.add_argument(
        "--lease-ttl-seconds", type=float, default=10.0, help="how long a budget lease lives unrenewed"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _listener(args: argparse.Namespace, name: str) -> Listener | None:
    cert, key = getattr(args, f"{name}_cert"), getattr(args, f"{name}_key")
    if bool(cert) != bool(key):
        raise SystemExit(f"sluicegate operator: --{name}-cert and --{name}-key go together")
    if not cert:
        return None
    return Listener(getattr(args, f"{name}_addr"), getattr(args, f"{name}_port"), cert, key)


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    if not args.namespace and not args.all_namespaces:
        print(
            "sluicegate operator: say which namespaces to watch: --namespace NS or --all-namespaces",
            file=sys.stderr,
        )
        return 2
    try:
        webhook_policy = WebhookPolicy.build(args.alert_webhook_allow, args.cluster_cidr)
        resources = sidecar_resources(os.environ)
    except (AllowListError, InjectionError) as exc:
        print(f"sluicegate operator: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if not args.verbose:  # kopf logs each handled event ("Handler ... succeeded"): thousands at a restart
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # every liveness probe
    if bool(args.authority_cert) != bool(args.authority_key):
        print("sluicegate operator: --authority-cert and --authority-key go together", file=sys.stderr)
        return 2
    authority = (
        HostedAuthority(
            args.database_url,
            args.authority_addr,
            args.authority_port,
            server_tls(args.authority_cert, args.authority_key) if args.authority_cert else None,
            lease_ttl_seconds=args.lease_ttl_seconds,
        )
        if args.database_url
        else None
    )
    opts = RunOptions(
        authority=authority,
        namespaces=tuple(args.namespace),
        all_namespaces=args.all_namespaces,
        operator_namespace=args.operator_namespace,
        kubeconfig=args.kubeconfig,
        context=args.context,
        webhook=_listener(args, "webhook"),
        keyservice=_listener(args, "keyservice"),
        sidecar_image=args.sidecar_image,
        sidecar_budget_authority=args.sidecar_budget_authority or None,
        keyservice_ca=Path(args.keyservice_ca).read_text(encoding="utf-8") if args.keyservice_ca else None,
        sidecar_resources=resources,
        standalone=args.standalone,
        liveness=args.liveness or None,
        resync_seconds=args.resync_seconds,
        list_page=max(1, args.list_page_size),
        schedule=ScheduleSettings(workers=max(1, args.reconcile_workers), wave_rate=args.wave_rate),
        spend=SpendSettings(
            interval_seconds=args.spend_interval_seconds,
            namespaces_per_second=args.spend_namespaces_per_second,
            metrics_port=args.sidecar_metrics_port,
            webhook_policy=webhook_policy,
        )
        if args.spend_interval_seconds > 0
        else None,
    )
    try:
        asyncio.run(run(opts))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"sluicegate operator: {exc}", file=sys.stderr)
        return 1
    return 0
