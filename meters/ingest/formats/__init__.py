"""Parsers of the supported formats; each streams rows into the staging tables."""
