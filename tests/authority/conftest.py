"""Fixtures: a real PostgreSQL server for the budget authority's tests."""

from __future__ import annotations

from tests.support.postgres import database_url, postgres_server

__all__ = ["database_url", "postgres_server"]
