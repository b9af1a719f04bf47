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
    (
        2,
        """
        CREATE TABLE ledger_entries (
            stream_id text NOT NULL,
            seq bigint NOT NULL CHECK (seq > 0),
            namespace text NOT NULL,
            time timestamptz NOT NULL,
            request_id text NOT NULL,
            workload text NOT NULL DEFAULT '',
            team text,
            service text,
            feature text,
            user_name text,
            end_customer text,
            connection text,
            provider text,
            model text,
            requested_model text NOT NULL,
            tier text,
            verdict text NOT NULL,
            input_tokens bigint,
            output_tokens bigint,
            cached_tokens bigint,
            cache_write_tokens bigint,
            cost_micro_usd bigint NOT NULL,
            cost_basis text NOT NULL,
            status text NOT NULL,
            budget_scopes text[] NOT NULL,
            prev_hash text NOT NULL,
            hash text NOT NULL,
            line text NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (stream_id, seq)
        );
        CREATE INDEX ledger_entries_time ON ledger_entries (namespace, time);
        CREATE TABLE ledger_streams (
            stream_id text PRIMARY KEY,
            namespace text NOT NULL,
            acked_seq bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        -- Ledger rows are insert-only for every role that obeys triggers (the authority's included):
        -- an UPDATE, DELETE or TRUNCATE raises. Only a superuser can get past it (by disabling
        -- triggers), and `sluicegate ledger verify --database-url` names the row it changed.
        CREATE FUNCTION ledger_entries_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'ledger_entries is insert-only (% refused)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END;
        $$;
        CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE OR DELETE ON ledger_entries
            FOR EACH ROW EXECUTE FUNCTION ledger_entries_insert_only();
        CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
            FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_insert_only();
        REVOKE UPDATE, DELETE, TRUNCATE ON ledger_entries FROM PUBLIC;
        """,
    ),
    (
        3,
        """
        -- The price book each config carried, per serial: what reports price the asked-for models
        -- with (``report savings --database-url``), instead of a catalog lookup per entry.
        CREATE TABLE ledger_prices (
            namespace text NOT NULL,
            serial bigint NOT NULL,
            connection text NOT NULL,
            provider text NOT NULL,
            model text NOT NULL,
            alias text,
            price jsonb NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (namespace, serial, connection, model)
        );
        """,
    ),
    (
        4,
        """
        -- Version 2's resolution and decision as columns for ``report savings --database-url``, which
        -- otherwise parses every row's line as JSON. The authority fills them from the line it decodes
        -- anyway (``ledgerrow.row_values``; ``ledger verify`` checks them against the line like every
        -- column). Rows stored before are filled here from their lines, once: the insert-only trigger
        -- is off for this statement only, inside the migration's transaction, whose ALTER TABLE holds
        -- the table's exclusive lock throughout (no other statement can run on it meanwhile).
        ALTER TABLE ledger_entries
            ADD COLUMN resolution_kind text,
            ADD COLUMN resolution_tier text,
            ADD COLUMN decision_action text;
        ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_no_update;
        UPDATE ledger_entries SET
            resolution_kind = (line::jsonb) #>> '{resolution,kind}',
            resolution_tier = (line::jsonb) #>> '{resolution,tier}',
            decision_action = (line::jsonb) #>> '{decision,action}'
            WHERE line LIKE '%"resolution":{%' OR line LIKE '%"decision":{%';
        ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_no_update;
        """,
    ),
    (
        5,
        """
        -- The sidecar process a lease was granted to (``SyncRequest.process_id``): a grant whose reply
        -- was lost goes to that process's next ask instead of staying charged in full.
        ALTER TABLE budget_leases ADD COLUMN process_id text;
        """,
    ),
)
