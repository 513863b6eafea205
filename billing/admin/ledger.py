"""Django admin: ledger."""
