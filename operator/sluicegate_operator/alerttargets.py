"""Which alert webhook URLs the operator may POST to. Pure: takes URLs and resolved addresses.

A webhook URL comes from a Secret in the tenant's namespace, which tenants can write, so it must not
aim the operator at the cluster: only ``https`` to a host whose every address is public, and outside
the cluster's own ranges, unless the chart's allow-list (``--alert-webhook-allow``) names the host
(``hooks.example.com``, ``*.corp.example``) or its addresses (``10.20.0.0/16``). An allow-listed target
may also use plain ``http``. Names that mean the cluster itself (``localhost``, single-label names,
``*.svc``, ``*.cluster.local``, ``*.internal``) are refused before any lookup.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
INTERNAL_SUFFIXES = (".svc", ".cluster.local", ".internal", ".local", ".localhost")


class AllowListError(ValueError):
    """An allow-list entry that is neither a host name, ``*.suffix`` nor a CIDR."""


@dataclass(frozen=True, slots=True)
class WebhookPolicy:
    """The allow-list and the cluster's own ranges (pods, services), refused like private ones."""

    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()  # from ``*.corp.example``: ".corp.example"
    networks: tuple[Network, ...] = ()
    cluster_networks: tuple[Network, ...] = ()

    @classmethod
    def build(cls, allow: Iterable[str] = (), cluster_cidrs: Iterable[str] = ()) -> WebhookPolicy:
        hosts: set[str] = set()
        suffixes: list[str] = []
        networks: list[Network] = []
        for raw in allow:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = entry[2:] if entry.startswith("*.") else entry
            if not name or any(not part or len(part) > 63 for part in name.split(".")) or "/" in name:
                raise AllowListError(
                    f"alert webhook allow-list entry {raw!r} is not a host, *.suffix or CIDR"
                )
            if entry.startswith("*."):
                suffixes.append("." + name)
            else:
                hosts.add(name)
        try:
            cluster = tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cluster_cidrs if c.strip())
        except ValueError as exc:
            raise AllowListError(f"cluster CIDR: {exc}") from None
        return cls(frozenset(hosts), tuple(suffixes), tuple(networks), cluster)

    def host_allowed(self, host: str) -> bool:
        return host in self.hosts or any(host.endswith(s) for s in self.suffixes)

    def address_allowed(self, address: Address) -> bool:
        return any(address in n for n in self.networks if n.version == address.version)


@dataclass(frozen=True, slots=True)
class Target:
    """A URL that passed the checks that need no lookup."""

    url: str
    scheme: str
    host: str  # lower case, no trailing dot, IPv6 without brackets
    port: int
    literal: Address | None  # the host when it is an IP address


class Refused(Exception):
    """Why the operator will not POST to a webhook URL (said on the policy's condition; never the URL)."""


def _address_problem(address: Address, policy: WebhookPolicy) -> str | None:
    """Why ``address`` is internal, or None when it is public and outside the cluster's ranges."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return _address_problem(embedded, policy)
    if any(address in n for n in policy.cluster_networks if n.version == address.version):
        return f"{address} is in the cluster's own range"
    if address.is_unspecified:
        return f"{address} is not a public address"
    if address.is_loopback:
        return f"{address} is a loopback address"
    if address.is_link_local:
        return f"{address} is link-local (metadata services live there)"
    if address.is_private:
        return f"{address} is a private address"
    if address.is_multicast or address.is_unspecified or address.is_reserved or not address.is_global:
        return f"{address} is not a public address"
    return None


def _name_problem(host: str) -> str | None:
    if host == "localhost" or host.endswith(INTERNAL_SUFFIXES):
        return f"{host!r} is a cluster-internal name"
    if "." not in host:
        return f"{host!r} is a single-label name (resolved inside the cluster)"
    return None


def check_url(url: str, policy: WebhookPolicy) -> Target:
    """The checks that need no lookup; raises ``Refused`` saying why."""
    try:
        parts = urlsplit(url)
        port = parts.port
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:
        raise Refused("the URL cannot be parsed") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise Refused(f"scheme {scheme or 'none'!r} is not https")
    if not host:
        raise Refused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise Refused("the URL carries credentials before the host")
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    allowed = policy.host_allowed(host) or (literal is not None and policy.address_allowed(literal))
    if not allowed:
        if literal is not None:
            problem = _address_problem(literal, policy)
            if problem is not None:
                raise Refused(f"{problem}; not in the alert webhook allow-list")
        else:
            problem = _name_problem(host)
            if problem is not None:
                raise Refused(f"{problem}; not in the alert webhook allow-list")
        # A name's addresses may be in an allow-listed range: then http is decided after the lookup.
        if scheme != "https" and (literal is not None or not policy.networks):
            raise Refused("plain http is allowed only to allow-listed hosts; use https")
    return Target(url, scheme, host, port or (443 if scheme == "https" else 80), literal)


def check_addresses(target: Target, addresses: Sequence[str], policy: WebhookPolicy) -> tuple[str, ...]:
    """The resolved addresses to connect to, after checking every one; raises ``Refused`` otherwise."""
    if not addresses:
        raise Refused(f"{target.host!r} does not resolve")
    by_name = policy.host_allowed(target.host)
    checked: list[str] = []
    for text in dict.fromkeys(addresses):
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if not by_name and not policy.address_allowed(address):
            problem = _address_problem(address, policy)
            if problem is not None:
                raise Refused(f"{target.host!r} resolves to {problem}; not in the alert webhook allow-list")
            if target.scheme != "https":
                raise Refused("plain http is allowed only to allow-listed hosts; use https")
        checked.append(str(address))
    return tuple(checked)
