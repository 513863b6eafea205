"""Writes for the tenancy app, one module per topic; each write is audited."""
