"""Billing writes, one module per domain: ledger, charging, tariffs, payments, bills, warnings.

Every function is keyword-only, takes `actor=` where it changes something a person would ask
about, and records its audit entry in the same transaction.
"""
