"""A network namespace the test owns, joined to the test's own namespace by a veth pair, to cut one
process off from another without killing it (a test owns the namespace; nothing leaves the machine).

Only addresses the test creates are used: a link-local /30 on the pair (one end in the namespace, one
in the test's), and the namespace's own loopback. Nothing is routed beyond the pair; the namespace and
both ends of the pair go away with ``delete()``. Needs root (``ip netns``, Debian's iproute2).
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    return None


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=10)


def _enter(path: str) -> None:
    """Move the calling thread (only it: setns is per thread) into the namespace at ``path``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
    finally:
        os.close(fd)


@dataclass
class NetNamespace:
    """``host_address`` is this side's end of the pair; the namespace reaches it while connected."""

    name: str
    host_link: str
    inner_link: str
    subnet: int = field(default_factory=lambda: 200 + secrets.randbelow(50))
    _inside: ThreadPoolExecutor | None = None

    @property
    def host_address(self) -> str:
        return f"169.254.{self.subnet}.1"

    @property
    def inner_address(self) -> str:
        return f"169.254.{self.subnet}.2"

    @classmethod
    def create(cls) -> NetNamespace:
        tag = secrets.token_hex(3)
        ns = cls(name=f"sgtest-{tag}", host_link=f"sgh{tag}", inner_link=f"sgn{tag}")
        _ip("netns", "add", ns.name)
        try:
            _ip("link", "add", ns.host_link, "type", "veth", "peer", "name", ns.inner_link)
            _ip("link", "set", ns.inner_link, "netns", ns.name)
            _ip("addr", "add", f"{ns.host_address}/30", "dev", ns.host_link)
            ns.exec_ip("addr", "add", f"{ns.inner_address}/30", "dev", ns.inner_link)
            ns.exec_ip("link", "set", "lo", "up")
            ns.reconnect()
        except BaseException:
            ns.delete()
            raise
        ns._inside = ThreadPoolExecutor(1, initializer=_enter, initargs=(f"/run/netns/{ns.name}",))
        return ns

    def exec_ip(self, *argv: str) -> None:
        _ip("netns", "exec", self.name, "ip", *argv)

    def prefix(self) -> list[str]:
        """Prefix for a command line to run it inside the namespace (``ip netns exec`` execs it: same PID)."""
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        """Take the pair down: the namespace keeps only its loopback; packets already sent are lost."""
        self.exec_ip("link", "set", self.inner_link, "down")
        _ip("link", "set", self.host_link, "down")

    def reconnect(self) -> None:
        _ip("link", "set", self.host_link, "up")
        self.exec_ip("link", "set", self.inner_link, "up")

    def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a thread that lives inside the namespace (to reach its loopback)."""
        assert self._inside is not None
        return self._inside.submit(fn).result()

    def delete(self) -> None:
        if self._inside is not None:
            self._inside.shutdown(wait=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True, timeout=10)
