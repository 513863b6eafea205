"""Where `make run` keeps its private PostgreSQL cluster, shared by the launcher and settings."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

DATABASE_NAME = "smartmeter"


def cluster_paths(base_dir: Path) -> tuple[Path, Path]:
    """Return (data directory, Unix socket directory) of the project's private cluster."""
    root = base_dir / ".pgdata"
    return root / "data", root / "run"


def cluster_database_url(base_dir: Path) -> str:
    """Return the DATABASE_URL of the private cluster: Unix socket only, never a TCP port."""
    _, socket_dir = cluster_paths(base_dir)
    return f"postgres://postgres@{quote(str(socket_dir), safe='')}/{DATABASE_NAME}"
