"""The budget authority: the fleet's budget accounts and leases in PostgreSQL (README, budgets)."""
