"""Parsers of the supported formats; each streams rows into the staging tables."""

from __future__ import annotations

from pathlib import Path

# File suffix -> batch format (inbox folder, uploads, the import command).
FORMAT_BY_SUFFIX = {
    ".csv": "csv",
    ".txt": "dsmr",
    ".dsmr": "dsmr",
    ".xml": "espi",
    ".ndjson": "chirpstack",
    ".jsonl": "chirpstack",
    ".json": "json",
}


def format_for_name(name: str) -> str | None:
    """Guess a batch format from a file name."""
    return FORMAT_BY_SUFFIX.get(Path(name).suffix.lower())
