"""``sluicegate sidecar``: serve the API on loopback and ops on all interfaces, in one event loop.

SIGTERM drains: readiness turns false, new requests get 503, in-flight streams get until the drain
deadline, then the ledger is flushed and the process exits 0 (fault 21).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sluicegate_contract import sidecarpod
from sluicegate_contract.keyring import KeyringError
from sluicegate_contract.ledgerfiles import LedgerError

from .app import build_api, build_ops
from .attribution import PodIdentity
from .authorityclient import SIDECAR_ID_FILE, AuthorityClient, sidecar_id
from .configload import dev_data_keys, public_keys_from
from .httplimits import ConnectionLimits, protocol_for, raise_open_file_limit
from .journalfile import LeaseJournal
from .keyclient import KeyClient
from .leases import LeaseSettings
from .ledger.writer import DEFAULT_MAX_FILE_BYTES, Ledger
from .ledgership import LedgerShipper, ledger_stream
from .metrics import Metrics
from .runtime import Gateway, Settings
from .serialstate import read_accepted

log = logging.getLogger("sluicegate.sidecar")
API_HOST = "127.0.0.1"  # never anything else: other pods must not reach the gateway (fault 23)
OPS_HOST = "0.0.0.0"  # health probes and Prometheus scrapes come from outside the Pod
SYNC_EVERY_SECONDS = 0.005  # default mode: the background fdatasync gathers this long (power loss risk)
DRAIN_GRACE_SECONDS = 1.0  # after the drain deadline: for cut streams to send their error event and settle
# Connections the API takes beyond --max-connections, answered 503, before it closes new ones at once.
API_CONNECTION_SLACK = 64


class ListenError(OSError):
    """A listener's address could not be bound (a port taken): the sidecar does not start."""


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for uvicorn to serve on. Both listeners are bound before either
    serves, so a port taken is one clear start-up error with nothing left open, never one server
    running while the other's uvicorn exits the process from inside the event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the sidecar drains first, then stops both servers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


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


async def _drain(gateway: Gateway, servers: Sequence[uvicorn.Server], stop: asyncio.Event) -> None:
    await stop.wait()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + gateway.settings.drain_seconds
    gateway.drain.start(deadline)  # streams still open at the deadline end with an SSE error event
    log.info("draining: %s in flight", gateway.drain.inflight)
    while gateway.drain.inflight > 0 and loop.time() < deadline + DRAIN_GRACE_SECONDS:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    for server in servers:
        server.should_exit = True


def build_gateway(
    settings: Settings,
    ledger_dir: Path,
    *,
    pod: PodIdentity,
    public_keys: Mapping[str, Ed25519PublicKey],
    data_keys: Callable[[], Mapping[str, bytes]],
    refresh_keys: Callable[[], Awaitable[bool]] | None = None,
    ledger_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Gateway:
    """The runtime with its config loaded (if a valid one is there) and open windows' spend restored."""
    metrics = Metrics()
    # With --ledger-sync a lone reply's fdatasync starts at once and concurrent ones coalesce while it
    # runs; by default replies wait only for the write, and fdatasync runs at most every few ms.
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
        public_keys: Mapping[str, Ed25519PublicKey] = public_keys_from(config_dir)
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
    stream = (
        ledger_stream(Path(args.ledger_dir), (SIDECAR_ID_FILE, sidecar_id)) if args.budget_authority else ""
    )
    gateway = build_gateway(
        settings,
        Path(args.ledger_dir),
        pod=pod_identity(environ, Path(args.labels_file)),
        public_keys=public_keys,
        data_keys=(lambda: keys.keys) if keys is not None else (lambda: dev_keys),
        refresh_keys=keys.refresh if keys is not None else None,
        ledger_file_bytes=max(1, int(args.ledger_file_mb * 1024 * 1024)),
    )
    fleet = None
    if args.budget_authority:
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
    log.info("open-file limit: %s", raise_open_file_limit())
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


def authority_verify(ca_file: str | None, ca_pem: str | None) -> ssl.SSLContext | bool:
    """How the authority's certificate is checked: the given CA (the chart serves it with the key
    service's certificate), else the system's trusted CAs."""
    if ca_file or ca_pem:
        return ssl.create_default_context(cafile=ca_file, cadata=ca_pem)
    return True


async def run_servers(
    gateway: Gateway,
    port: int,
    ops_port: int,
    max_connections: int = 1024,
    stop: asyncio.Event | None = None,
    *,
    api_limits: ConnectionLimits | None = None,
    ops_limits: ConnectionLimits | None = None,
    fleet: AuthorityClient | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT (or ``stop``) is set, drain, flush the ledger.

    Both listeners cap request heads and their arrival time and bound their connections (fault 5,
    32); the ops port, reachable from other Pods, gets few, so it can never use up what the API needs.
    """
    api_limits = api_limits or ConnectionLimits(max_connections=max_connections + API_CONNECTION_SLACK)
    ops_limits = ops_limits or ConnectionLimits(max_connections=32)
    common = {"loop": "none", "lifespan": "off", "access_log": False, "log_level": "warning"}
    api = _QuietServer(
        uvicorn.Config(
            build_api(gateway),
            host=API_HOST,
            port=port,
            http=protocol_for(api_limits),
            limit_concurrency=max_connections,
            timeout_keep_alive=30,
            **common,  # type: ignore[arg-type]
        )
    )
    ops = _QuietServer(
        uvicorn.Config(
            build_ops(gateway),
            host=OPS_HOST,
            port=ops_port,
            http=protocol_for(ops_limits),
            timeout_keep_alive=5,
            **common,  # type: ignore[arg-type]
        )
    )
    held = contextlib.ExitStack()
    try:
        api_socket = held.enter_context(listen(API_HOST, port))
        ops_socket = held.enter_context(listen(OPS_HOST, ops_port))
    except ListenError:
        held.close()
        await gateway.aclose()
        raise
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    watcher = loop.create_task(gateway.watch())
    drainer = loop.create_task(_drain(gateway, (api, ops), stop))
    syncer = loop.create_task(fleet.run()) if fleet is not None else None
    try:
        with held:
            await asyncio.gather(api.serve(sockets=[api_socket]), ops.serve(sockets=[ops_socket]))
    finally:
        watcher.cancel()
        drainer.cancel()
        if syncer is not None and fleet is not None:
            syncer.cancel()
            with contextlib.suppress(LedgerError):
                await gateway.ledger.flush()  # every settled entry on disk before the last shipping
            await fleet.close()  # nothing is in flight any more: ship the ledger, return every lease
        await gateway.aclose()
    return 0 if api.started else 1


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
