"""The authority's schema, as numbered migrations applied once each, in order, on start.

Append a migration; never edit one that has shipped. ``store.migrate`` applies what a database lacks
under an advisory lock, so replicas starting together apply each exactly once.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE budget_accounts (
            namespace text NOT NULL,
            policy text NOT NULL,
            split text NOT NULL,
            window_kind text NOT NULL CHECK (window_kind IN ('day', 'week', 'month')),
            window_start timestamptz NOT NULL,
            window_end timestamptz NOT NULL,
            cap bigint NOT NULL CHECK (cap >= 0),
            settled bigint NOT NULL DEFAULT 0 CHECK (settled >= 0),
            leased bigint NOT NULL DEFAULT 0 CHECK (leased >= 0),
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (namespace, policy, split, window_kind, window_start)
        );
        CREATE TABLE budget_leases (
            lease_id uuid PRIMARY KEY,
            namespace text NOT NULL,
            policy text NOT NULL,
            split text NOT NULL,
            window_kind text NOT NULL,
            window_start timestamptz NOT NULL,
            sidecar_id text NOT NULL,
            amount bigint NOT NULL CHECK (amount >= 0),
            reported bigint NOT NULL DEFAULT 0 CHECK (reported >= 0),
            state text NOT NULL CHECK (state IN ('open', 'closed', 'expired', 'reconciled')),
            expires_at timestamptz NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            FOREIGN KEY (namespace, policy, split, window_kind, window_start)
                REFERENCES budget_accounts (namespace, policy, split, window_kind, window_start)
        );
        CREATE INDEX budget_leases_due ON budget_leases (expires_at) WHERE state = 'open';
        CREATE INDEX budget_leases_account
            ON budget_leases (namespace, policy, split, window_kind, window_start);
        """,
    ),
)
