"""Writes of the meters app, one module per topic.

Every service takes `actor=` and records its audit entry in its own transaction. The import
pipeline itself (meters.ingest) writes readings with set-wise SQL; these services start it,
resume it and record its outcome.
"""
