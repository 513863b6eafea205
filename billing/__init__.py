"""Tariffs, bills, prepaid wallets and their ledger, top-ups, payments and shortage warnings."""
