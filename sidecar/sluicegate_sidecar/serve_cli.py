"""``sluicegate sidecar``: serve the API on loopback and ops on all interfaces, in one event loop.

SIGTERM drains: readiness turns false, new requests get 503, in-flight streams get until the drain
deadline, then the ledger is flushed and the process exits 0 (fault 21).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import ssl
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sluicegate_contract import sidecarpod
from sluicegate_contract.rawkeys import KeyringError

from .attribution import PodIdentity
from .configload import dev_data_keys, public_keys_from
from .httplimits import ConnectionLimits, raise_open_file_limit
from .keyclient import KeyClient
from .ledger.writer import DEFAULT_MAX_FILE_BYTES, Ledger
from .metrics import Metrics
from .runtime import Gateway, Settings
from .serialstate import read_accepted
from .servers import API_CONNECTION_SLACK, ListenError, run_servers

if TYPE_CHECKING:
    from .authorityclient import AuthorityClient

log = logging.getLogger("sluicegate.sidecar")
# Default mode: the background fdatasync gathers this long (the power-loss window; an emptyDir does not
# outlive a node failure anyway), as PostgreSQL's WAL writer does for asynchronous commits (its
# wal_writer_delay, 200 ms by default). Each fdatasync is a thread hop and a disk flush: every 5 ms
# cost 8 % of the CPU at c=1, every 50 ms still ~2 % against this.
SYNC_EVERY_SECONDS = 0.2


def pod_identity(environ: Mapping[str, str], labels_file: Path | None) -> PodIdentity:
    labels: dict[str, str] = {}
    if labels_file is not None and labels_file.exists():
        for line in labels_file.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key:
                labels[key.strip()] = value.strip().strip('"')
    workload = (
        environ.get(sidecarpod.ENV_WORKLOAD)
        or labels.get("app.kubernetes.io/name")
        or labels.get("app")
        or environ.get(sidecarpod.ENV_POD_NAME, "")
    )
    return PodIdentity(
        namespace=environ.get(sidecarpod.ENV_POD_NAMESPACE, "default"),
        workload=workload,
        service_account=environ.get(sidecarpod.ENV_SERVICE_ACCOUNT, ""),
        labels=labels,
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sluicegate sidecar", description="Serve the OpenAI-compatible gateway.")
    p.add_argument("--config", required=True, help="sealed config directory (config.json, config.sig)")
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get(sidecarpod.ENV_API_PORT, str(sidecarpod.API_PORT))),
        help="API port, 127.0.0.1 only",
    )
    p.add_argument(
        "--ops-port",
        type=int,
        default=sidecarpod.OPS_PORT,
        help="/metrics /healthz /readyz port, all interfaces",
    )
    p.add_argument("--ledger-dir", default=sidecarpod.LEDGER_DIR, help="spend ledger directory")
    p.add_argument(
        "--namespace", help="refuse configs for other namespaces (default: $SLUICEGATE_POD_NAMESPACE)"
    )
    p.add_argument("--key-service", help="operator key service URL (default: dev keys in CONFIG/keys/)")
    p.add_argument("--token-file", default=sidecarpod.TOKEN_FILE, help="projected SA token")
    p.add_argument("--key-service-ca", help="CA bundle for the key service")
    p.add_argument(
        "--labels-file",
        default=os.path.join(
            os.environ.get(sidecarpod.ENV_PODINFO_DIR, sidecarpod.PODINFO_DIR), sidecarpod.LABELS_FILE
        ),
        help="downward-API pod labels",
    )
    p.add_argument("--max-body-mb", type=float, default=16.0, help="largest request body accepted")
    p.add_argument("--receive-timeout", type=float, default=30.0, help="seconds to receive a request body")
    p.add_argument("--drain-seconds", type=float, default=25.0, help="SIGTERM drain deadline")
    p.add_argument(
        "--budget-wait-seconds",
        type=float,
        default=5.0,
        help="most a request waits for reservations in flight to free budget room",
    )
    p.add_argument("--max-connections", type=int, default=1024, help="concurrent connections before 503")
    p.add_argument(
        "--ops-max-connections",
        type=int,
        default=32,
        help="open connections on the ops port; more are closed at once (it can never starve the API)",
    )
    p.add_argument("--max-header-kb", type=int, default=64, help="largest request head (431 above it)")
    p.add_argument(
        "--header-timeout", type=float, default=10.0, help="seconds for a request's headers to arrive"
    )
    p.add_argument(
        "--ledger-sync",
        action="store_true",
        help="answer only once the ledger line is fdatasynced, for a persistent local ledger directory "
        "(default: once it is written, fdatasync batched in the background)",
    )
    p.add_argument(
        "--ledger-async",
        action="store_true",
        help="deprecated, no effect: the default now answers once the line is written",
    )
    p.add_argument(
        "--ledger-file-mb",
        type=float,
        default=DEFAULT_MAX_FILE_BYTES / (1024 * 1024),
        help="close a ledger file past this size and go on in the next (the unit of pruning)",
    )
    p.add_argument(
        "--ledger-retain-hours",
        type=float,
        default=24.0,
        help="fleet mode: delete closed ledger files this long after their last line once the database "
        "acknowledged every line of them (negative: keep them all; without an authority none are deleted)",
    )
    p.add_argument("--no-access-log", action="store_true", help="no JSON line per request on stdout")
    p.add_argument(
        "--budget-authority",
        action="append",
        default=[],
        metavar="URL",
        help="fleet mode: hold caps across replicas with leases from this budget authority (repeatable)",
    )
    p.add_argument(
        "--budget-authority-ca",
        metavar="FILE",
        help="fleet mode: CA bundle that signed the authority's certificate (default: the key service's CA)",
    )
    p.add_argument(
        "--lease-refresh-seconds", type=float, default=1.0, help="fleet mode: how often leases are synced"
    )
    return p.parse_args(argv)


def build_gateway(
    settings: Settings,
    ledger_dir: Path,
    *,
    pod: PodIdentity,
    public_keys: Mapping[str, bytes],
    data_keys: Callable[[], Mapping[str, bytes]],
    refresh_keys: Callable[[], Awaitable[bool]] | None = None,
    ledger_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Gateway:
    """The runtime with its config loaded (if a valid one is there) and open windows' spend restored."""
    metrics = Metrics()
    # With --ledger-sync a lone reply's fdatasync starts at once and concurrent ones coalesce while it
    # runs; by default replies wait only for the write, and fdatasync runs every SYNC_EVERY_SECONDS.
    ledger = Ledger.open(
        ledger_dir,
        sync=settings.ledger_sync,
        batch_delay=0.0 if settings.ledger_sync else SYNC_EVERY_SECONDS,
        max_file_bytes=ledger_file_bytes,
    )
    metrics.ledger_healthy.set(1 if ledger.healthy else 0)
    gateway = Gateway(
        settings=settings,
        public_keys=public_keys,
        data_keys=data_keys,
        ledger=ledger,
        metrics=metrics,
        pod=pod,
        refresh_keys=refresh_keys,
        state_dir=ledger_dir,  # the sidecar's own volume: the newest accepted serial outlives restarts
    )
    gateway.accepted, gateway.serial_state_problem = read_accepted(ledger_dir)
    if gateway.serial_state_problem is not None:
        log.error(
            "rollback guard: %s; treated as absent until a config is accepted", gateway.serial_state_problem
        )
    gateway.try_load()
    restored = gateway.restore_spend(datetime.now(UTC))
    log.info("restored %s ledger entries into open budget windows", restored)
    return gateway


async def serve(args: argparse.Namespace) -> int:
    config_dir = Path(args.config)
    environ = os.environ
    namespace = args.namespace or environ.get(sidecarpod.ENV_POD_NAMESPACE)
    try:
        public_keys: Mapping[str, bytes] = public_keys_from(config_dir)
    except KeyringError as exc:
        print(f"sluicegate sidecar: {exc}", file=sys.stderr)
        return 1
    keys = (
        KeyClient(
            args.key_service,
            Path(args.token_file),
            args.key_service_ca,
            environ.get(sidecarpod.ENV_KEY_SERVICE_CA),
        )
        if args.key_service
        else None
    )
    if keys is not None:
        await keys.fetch_with_backoff()
    dev_keys = dev_data_keys(config_dir) if keys is None else {}
    if args.ledger_async:
        log.warning("--ledger-async is deprecated and has no effect: replies wait for the write only")
    settings = Settings(
        config_dir=config_dir,
        namespace=namespace,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        receive_timeout=args.receive_timeout,
        drain_seconds=args.drain_seconds,
        budget_wait_seconds=args.budget_wait_seconds,
        access_log=not args.no_access_log,
        ledger_sync=args.ledger_sync,
        default_tier=environ.get(sidecarpod.ENV_DEFAULT_TIER) or None,
    )
    # Fleet mode: the stream (sidecar id) is settled before the ledger opens (a wiped one starts anew).
    stream = ""
    if args.budget_authority:
        stream = fleet_stream(Path(args.ledger_dir))
        one_malloc_arena(environ)
    gateway = build_gateway(
        settings,
        Path(args.ledger_dir),
        pod=pod_identity(environ, Path(args.labels_file)),
        public_keys=public_keys,
        data_keys=(lambda: keys.keys) if keys is not None else (lambda: dev_keys),
        refresh_keys=keys.refresh if keys is not None else None,
        ledger_file_bytes=max(1, int(args.ledger_file_mb * 1024 * 1024)),
    )
    fleet = fleet_client(args, gateway, stream, environ) if args.budget_authority else None
    log.info("open-file limit: %s", raise_open_file_limit())
    tune_gc()
    header = {"max_header_bytes": args.max_header_kb * 1024, "header_timeout": args.header_timeout}
    api_connections = args.max_connections + API_CONNECTION_SLACK
    try:
        return await run_servers(
            gateway,
            args.port,
            args.ops_port,
            api_limits=ConnectionLimits(max_connections=api_connections, **header),
            ops_limits=ConnectionLimits(max_connections=args.ops_max_connections, **header),
            max_connections=args.max_connections,
            fleet=fleet,
        )
    except ListenError as exc:
        log.error("%s", exc.strerror)
        return 1


# What start-up made (the imports, the gateway) lives as long as the process: frozen, the collector never
# scans it again. A request makes a few hundred tracked objects that die with it (their references go
# first); at the default thresholds (700, 10, 10) the young generations were collected every couple of
# requests, each time walking every in-flight request's objects: 5 % of the CPU at c=32, the same as
# with the collector off (issue 18). Cycles are still collected, ~14 times less often.
GC_THRESHOLDS = (10_000, 20, 20)


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


# glibc gives each thread that allocates its own malloc arena (up to eight a core), and the pages an
# arena has touched stay resident. Fleet mode's worker threads read the ledger to ship it (a batch of
# lines a sync, each line a malloc'd bytes object): their arenas held ~5 MiB more than the process
# needs (a fleet sidecar 54.2 -> 50.2 MiB after load with one arena, CPU per request unchanged: the
# GIL already serialises nearly all allocation). Local mode's worker threads (the ledger's fdatasync)
# allocate nothing: no gain there, so ctypes (0.4 MiB) is loaded in fleet mode only.
M_ARENA_MAX = -8  # glibc's mallopt parameter: the most malloc arenas, as MALLOC_ARENA_MAX sets it


def one_malloc_arena(environ: Mapping[str, str]) -> bool:
    """Limit this process to one malloc arena (unless ``MALLOC_ARENA_MAX`` was set: glibc read it at
    start); False where the C library has no ``mallopt`` (musl) or it refused."""
    if "MALLOC_ARENA_MAX" in environ:
        return False
    import ctypes

    try:
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1))
    except (AttributeError, OSError):
        return False


# Fleet mode's modules (leases, the lease journal, the ledger shipper, the authority client) are imported
# by fleet mode only: a sidecar without --budget-authority never holds them (resident memory).
def fleet_stream(ledger_dir: Path) -> str:
    from .authorityclient import SIDECAR_ID_FILE, sidecar_id
    from .ledgership import ledger_stream

    return ledger_stream(ledger_dir, (SIDECAR_ID_FILE, sidecar_id))


def fleet_client(
    args: argparse.Namespace, gateway: Gateway, stream: str, environ: Mapping[str, str]
) -> AuthorityClient:
    from .authorityclient import AuthorityClient
    from .journalfile import LeaseJournal
    from .leases import LeaseSettings
    from .ledgership import LedgerShipper

    fleet = AuthorityClient(
        args.budget_authority,
        stream,
        lambda: gateway.served.loaded.config.namespace if gateway.served else None,
        LeaseSettings(refresh_seconds=args.lease_refresh_seconds),
        metrics=gateway.metrics,
        shipper=LedgerShipper(
            Path(args.ledger_dir),
            stream,
            retain_seconds=args.ledger_retain_hours * 3600 if args.ledger_retain_hours >= 0 else None,
        ),
        journal=LeaseJournal(Path(args.ledger_dir)),
        token_file=Path(args.token_file),
        verify=authority_verify(
            args.budget_authority_ca or args.key_service_ca, environ.get("SLUICEGATE_KEY_SERVICE_CA")
        ),
    )
    # failMode static reads the policies of the config in force (``staticallowance``)
    fleet.book.budgets = lambda: gateway.served.loaded.config.budgets if gateway.served else ()
    gateway.budgets.fleet = fleet
    return fleet


def authority_verify(ca_file: str | None, ca_pem: str | None) -> ssl.SSLContext | bool:
    """How the authority's certificate is checked: the given CA (the chart serves it with the key
    service's certificate), else the system's trusted CAs."""
    if ca_file or ca_pem:
        return ssl.create_default_context(cafile=ca_file, cadata=ca_pem)
    return True


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    import uvloop

    try:
        return uvloop.run(serve(args))
    except KeyboardInterrupt:
        return 0
