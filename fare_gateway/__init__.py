"""The fare gateway: prices taps, posts them to the ledger, answers with receipts."""
