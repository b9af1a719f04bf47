"""The ``sluicegate sidecar`` command line: the ledger mode flags (ledger before reply, docs/architecture.md)."""

from __future__ import annotations

from sluicegate_sidecar.serve_cli import parse_args


def test_replies_wait_for_the_ledger_write_by_default_and_for_its_fdatasync_with_ledger_sync() -> None:
    assert parse_args(["--config", "cfg"]).ledger_sync is False
    assert parse_args(["--config", "cfg", "--ledger-sync"]).ledger_sync is True


def test_the_deprecated_ledger_async_flag_still_starts_the_sidecar_in_the_default_mode() -> None:
    args = parse_args(["--config", "cfg", "--ledger-async"])  # a Pod spec written for the old flag
    assert args.ledger_async is True and args.ledger_sync is False
