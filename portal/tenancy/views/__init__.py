"""Tenant-scoped HTML views: the sealed bases (base.py) and the pages built on them."""
