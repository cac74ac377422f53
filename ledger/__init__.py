"""Double-entry ledger: accounts, immutable entries, idempotent posting, balances."""
