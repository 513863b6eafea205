"""Tenant-scoped REST API (DRF): the sealed bases (base.py) and the endpoints."""
