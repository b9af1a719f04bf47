"""Fixtures: a real PostgreSQL server for the fleet's budget authority."""

from __future__ import annotations

from tests.support.postgres import database_url, postgres_server

__all__ = ["database_url", "postgres_server"]
