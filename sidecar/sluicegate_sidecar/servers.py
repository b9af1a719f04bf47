"""The sidecar's two listeners in one event loop: the API on loopback, ops (probes, metrics) on all
interfaces; both bound before either serves, drained together on SIGTERM (fault 21)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING

import uvicorn

from sluicegate_contract.ledgerfiles import LedgerError

from .app import build_api, build_ops
from .httplimits import ConnectionLimits, protocol_for
from .runtime import Gateway

if TYPE_CHECKING:  # fleet mode only: a sidecar without --budget-authority never loads it
    from .authorityclient import AuthorityClient

log = logging.getLogger("sluicegate.sidecar")
API_HOST = "127.0.0.1"  # never anything else: other pods must not reach the gateway (fault 23)
OPS_HOST = "0.0.0.0"  # health probes and Prometheus scrapes come from outside the Pod
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
    """uvicorn without its own signal handling: the sidecar drains first, then stops both servers.

    uvicorn's main loop wakes every 0.1 s to see whether it should exit, and refreshes its Date header
    every tenth time: for two servers, twenty wake-ups a second of an idle sidecar, about half of all
    its wake-ups (each a trip through the event loop, paid by every Pod of every app). Here it wakes
    when told to exit, at once, and otherwise once a second for the Date header."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._exit = asyncio.Event()
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        return self._exit.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit.set()
        else:
            self._exit.clear()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def main_loop(self) -> None:
        while not await self.on_tick(0):  # a tick counted 0 refreshes the Date header
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._exit.wait()


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
    # ws "none": no WebSocket route is served, so no WebSocket library is loaded (``auto`` imports one
    # when installed, for nothing). No proxy-headers middleware: nothing reads the client address, and
    # it is one more layer per request.
    common = {
        "loop": "none",
        "lifespan": "off",
        "ws": "none",
        "access_log": False,
        "log_level": "warning",
        "proxy_headers": False,
    }
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
