"""The harness the benchmarks share: a scratch database of their own, the machine they ran on,
and the verdict on a ratio.

Every scratch database's name must contain `bench`: it is dropped and created again without
asking. The benchmarks import this module by name (`scripts/` is on their path as they run).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg
from psycopg import sql

BASE_DIR = Path(__file__).resolve().parent.parent


def database_conninfo(url: str, dbname: str | None = None) -> str:
    parts = urlparse(url)
    if dbname is not None:
        parts = parts._replace(path="/" + dbname)
    return urlunparse(parts._replace(scheme="postgresql"))


def database_name(url: str) -> str:
    name = urlparse(url).path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to drop and recreate {name!r}: its name must contain 'bench'")
    return name


def recreate_database(url: str) -> None:
    name = database_name(url)
    with psycopg.connect(database_conninfo(url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def scratch_teardown(
    *,
    database_url: str,
    workdir: Path,
    keep: bool,
    tidy: Callable[[], object],
    say: Callable[[str], None],
) -> None:
    """End a bench: close Django's connections, `tidy` (the bench's Redis keys), then drop the
    scratch database and files, or say where they were kept. Never raises on the way out but
    for the drop itself, so a failing bench still cleans up."""
    with contextlib.suppress(Exception):
        from django.db import connections

        connections.close_all()
    with contextlib.suppress(Exception):
        tidy()
    if keep:
        say(f"kept: database {database_url}, files in {workdir}")
    else:
        drop_database(database_url)
        shutil.rmtree(workdir, ignore_errors=True)


def drop_database(url: str) -> None:
    name = database_name(url)
    with psycopg.connect(database_conninfo(url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def prepare_database(url: str) -> None:
    """Create the scratch database afresh and migrate it (its name must contain 'bench')."""
    recreate_database(url)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "portal.settings.local",
        "DJANGO_DEBUG": "0",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=BASE_DIR, env=env, check=True
    )


def machine_info(conninfo: str) -> dict[str, Any]:
    """The machine, PostgreSQL and Python a run was measured on, as data (for the JSON)."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    memory_gib: float | None = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal"):
                memory_gib = int(line.split()[1]) / 1024 / 1024
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT version()").fetchone()
        version = str(row[0]) if row else "?"
        settings = conn.execute(
            "SELECT name, setting || coalesce(unit, '') FROM pg_settings "
            "WHERE name IN ('shared_buffers', 'work_mem', 'fsync', 'synchronous_commit', "
            "'max_wal_size', 'wal_level', 'jit') ORDER BY name"
        ).fetchall()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": memory_gib,
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
        "postgresql": version,
        "postgresql_settings": dict(settings),
        "python": platform.python_version(),
    }


def describe_machine(info: dict[str, Any]) -> list[str]:
    """machine_info's figures as the lines every benchmark prints first."""
    memory = "?" if info["memory_gib"] is None else f"{info['memory_gib']:.1f} GiB"
    load = " ".join(f"{x:.2f}" for x in info["load_average"])
    settings = ", ".join(f"{name}={value}" for name, value in info["postgresql_settings"].items())
    return [
        f"machine: {info['cores']} cores ({info['cpu']}), {memory} RAM, {info['platform']}",
        f"load average at start: {load}",
        f"PostgreSQL: {info['postgresql']}",
        f"PostgreSQL settings: {settings or '?'}",
        f"Python {info['python']}",
    ]


def machine_lines(conninfo: str) -> list[str]:
    return describe_machine(machine_info(conninfo))


def source_revision() -> dict[str, Any]:
    """The commit a run measured, and whether the work tree differed from it, so that two
    runs' JSON can be told apart; empty outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=BASE_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=BASE_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"commit": commit, "modified": bool(status.strip())}


def verdict(ratio: float, goal: float) -> str:
    return "PASS" if ratio >= goal else "BELOW"
