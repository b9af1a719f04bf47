"""The budget authority: the fleet's budget accounts and leases, kept in PostgreSQL (DESIGN §7)."""
