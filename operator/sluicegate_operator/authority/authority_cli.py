"""``sluicegate authority``: serve the budget authority for sealed config directories, standalone.

The database comes from ``SLUICEGATE_DATABASE_URL`` (a libpq URL); migrations run on start. On loopback
callers are trusted. A non-loopback ``--listen`` needs what a cluster has — TLS (``--tls-cert`` and
``--tls-key``) and callers' projected ServiceAccount tokens checked with a TokenReview
(``--token-review``: a token opens only its own namespace's accounts) — or an explicit
``--insecure-listen``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import ssl
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg_pool import PoolTimeout

from sluicegate_contract.keyring import KeyringError

from ..keyservice import server_tls, serving
from ..kube import Kube
from ..kubeapi import load_configuration
from .callers import TokenCallers
from .configs import ConfigSet, public_keys_of
from .service import AuthorityService
from .store import Store, StoreUnavailable

DATABASE_ENV = "SLUICEGATE_DATABASE_URL"
log = logging.getLogger("sluicegate.authority")

EPILOG = """\
example:
  export SLUICEGATE_DATABASE_URL=postgresql://sluicegate@127.0.0.1:5432/sluicegate
  sluicegate authority --config .run/config --listen 127.0.0.1:8480
  sluicegate sidecar --config .run/config --budget-authority http://127.0.0.1:8480

beyond loopback (TLS, and each sidecar's projected ServiceAccount token checked with a TokenReview):
  sluicegate authority --config .run/config --listen 0.0.0.0:8480 --tls-cert tls.crt --tls-key tls.key \
      --token-review --kubeconfig ~/.kube/config
  sluicegate sidecar ... --budget-authority https://authority.example:8480 --budget-authority-ca ca.crt \
      --token-file /var/run/secrets/sluicegate/token
"""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="sluicegate authority",
        description="Serve fleet budget leases for the policies of sealed config directories.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", action="extend", nargs="+", required=True, type=Path, help="sealed config directories"
    )
    p.add_argument("--listen", default="127.0.0.1:8480", help="HOST:PORT to serve on (port 0: any)")
    p.add_argument("--public-keys", type=Path, help="trusted signing keys (default: DIR/keys/ of each)")
    p.add_argument("--lease-ttl-seconds", type=float, default=10.0, help="how long a lease lives unrenewed")
    p.add_argument("--poll-seconds", type=float, default=1.0, help="config reads and expiry sweeps")
    p.add_argument("--connect-seconds", type=float, default=30.0, help="how long to wait for the database")
    p.add_argument(
        "--tls-cert", type=Path, help="serve HTTPS with this certificate chain (PEM; with --tls-key)"
    )
    p.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    p.add_argument(
        "--token-review",
        action="store_true",
        help="authenticate callers: their projected ServiceAccount token (audience sluicegate), checked"
        " with a TokenReview, opens only its own namespace's accounts",
    )
    p.add_argument("--kubeconfig", help="for --token-review (default: in-cluster, else $KUBECONFIG)")
    p.add_argument("--context", help="kubeconfig context for --token-review")
    p.add_argument(
        "--insecure-listen",
        action="store_true",
        help="allow a non-loopback --listen without TLS and --token-review (a network you trust)",
    )
    return p.parse_args(list(argv))


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen wants HOST:PORT, not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def _connect(url: str, ttl: timedelta, patience: float) -> Store:
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        try:
            return await Store.connect(url, ttl=ttl)
        except (StoreUnavailable, PoolTimeout, psycopg.OperationalError, OSError) as exc:
            if asyncio.get_running_loop().time() >= deadline:
                raise StoreUnavailable(f"cannot reach the database: {exc}") from exc
            log.warning("database not reachable yet: %s", exc)
            await asyncio.sleep(1.0)


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def exposure(host: str, *, tls: bool, reviewed: bool, insecure: bool) -> str | None:
    """Why serving on ``host`` is refused (None: allowed). Beyond loopback, as in a cluster: TLS and
    token review, unless the operator explicitly opts out with ``--insecure-listen``."""
    if loopback(host) or insecure or (tls and reviewed):
        return None
    missing = " and ".join(
        what
        for what, there in (("TLS (--tls-cert, --tls-key)", tls), ("--token-review", reviewed))
        if not there
    )
    return (
        f"refusing to serve on {host} (not loopback) without {missing}; or give --insecure-listen"
        " on a network you trust"
    )


async def serve(args: argparse.Namespace, url: str) -> int:
    host, port = _listen(args.listen)
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    tls_on = args.tls_cert is not None
    refused = exposure(host, tls=tls_on, reviewed=args.token_review, insecure=args.insecure_listen)
    if refused is not None:
        raise ValueError(refused)
    tls = server_tls(args.tls_cert, args.tls_key) if tls_on else None
    if not loopback(host) and not args.token_review:
        log.warning(
            "callers are not authenticated: anyone who reaches %s may sync any namespace's leases", host
        )
    kube = None
    if args.token_review:
        try:
            configuration = await load_configuration(kubeconfig=args.kubeconfig, context=args.context)
        except Exception as exc:  # kubernetes_asyncio's ConfigException, a missing or unreadable file
            raise ValueError(f"--token-review: no Kubernetes credentials: {exc}") from exc
        kube = Kube(configuration)
    try:
        return await _serve(args, url, host, port, tls, TokenCallers(kube.review_token) if kube else None)
    finally:
        if kube is not None:
            await kube.close()


async def _serve(
    args: argparse.Namespace,
    url: str,
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    callers: TokenCallers | None,
) -> int:
    configs = ConfigSet(args.config, public_keys_of(args.config, args.public_keys))
    configs.load(datetime.now(UTC))
    if not configs.configs:
        log.warning("no verified config yet in %s; syncs are refused until one appears", args.config)
    store = await _connect(url, timedelta(seconds=args.lease_ttl_seconds), args.connect_seconds)
    service = AuthorityService(store, configs, callers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with serving(service.app(), host=host, port=port, tls=tls) as bound:
            log.info("budget authority listening on %s://%s:%s", "https" if tls else "http", host, bound)
            maintain = asyncio.create_task(service.maintain(args.poll_seconds))
            await stop.wait()
            maintain.cancel()
    finally:
        await store.close()
    return 0


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    url = os.environ.get(DATABASE_ENV, "")
    if not url:
        print(f"sluicegate authority: set {DATABASE_ENV} to the PostgreSQL URL", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(args, url))
    except (ValueError, KeyringError, StoreUnavailable, OSError) as exc:  # OSError: a certificate, a port
        print(f"sluicegate authority: {exc}", file=sys.stderr)
        return 1
