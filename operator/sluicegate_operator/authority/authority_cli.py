"""``sluicegate authority``: serve the budget authority for sealed config directories, standalone.

The database comes from ``SLUICEGATE_DATABASE_URL`` (a libpq URL); migrations run on start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg_pool import PoolTimeout

from sluicegate_contract.keyring import KeyringError

from ..keyservice import serving
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


async def serve(args: argparse.Namespace, url: str) -> int:
    host, port = _listen(args.listen)
    if host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("callers are not authenticated: serve the standalone authority on loopback only")
    configs = ConfigSet(args.config, public_keys_of(args.config, args.public_keys))
    configs.load(datetime.now(UTC))
    if not configs.configs:
        log.warning("no verified config yet in %s; syncs are refused until one appears", args.config)
    store = await _connect(url, timedelta(seconds=args.lease_ttl_seconds), args.connect_seconds)
    service = AuthorityService(store, configs)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with serving(service.app(), host=host, port=port, tls=None) as bound:
            log.info("budget authority listening on http://%s:%s", host, bound)
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
    except (ValueError, KeyringError, StoreUnavailable) as exc:
        print(f"sluicegate authority: {exc}", file=sys.stderr)
        return 1
