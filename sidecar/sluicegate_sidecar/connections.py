"""Which upstream each connection of a config gets, and whether a reloaded config may keep it."""

from __future__ import annotations

import ssl

from sluicegate_contract.schema import Provider

from .configload import LoadedConfig
from .upstream import AiohttpUpstream, Upstream


def build_client(provider: Provider, tls: ssl.SSLContext) -> Upstream:
    """A connection's upstream. A mock connection's imports httpx and the mock (memory every sidecar
    without one would pay); a real one's is an aiohttp session (``upstream``)."""
    if provider.provider == "mock":
        from .mockupstream import mock_upstream

        return mock_upstream(provider.mock)
    return AiohttpUpstream(provider.timeouts.connect_seconds, tls)


def same_upstream(old: LoadedConfig, new: LoadedConfig, name: str) -> bool:
    """Whether connection ``name`` reaches its upstream the same way in both configs (its upstream
    and the pooled connections in it can be kept across the reload)."""
    before = old.connections.get(name)
    after = new.connections.get(name)
    old_provider = next((p for p in old.config.providers if p.name == name), None)
    new_provider = next((p for p in new.config.providers if p.name == name), None)
    return (
        before == after
        and old_provider is not None
        and new_provider is not None
        and old_provider.timeouts == new_provider.timeouts
        and old_provider.mock == new_provider.mock
    )
