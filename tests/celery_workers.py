"""Real Celery worker processes, for the tests that kill them or take their broker away."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def worker_process(
    *args: str, env: Mapping[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """`celery -A portal worker *args` on this test's database, with `env` on top; its output
    goes to `log`, or nowhere."""
    db = connection.settings_dict
    full_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        **(env or {}),
    }
    command = [sys.executable, "-m", "celery", "-A", "portal", "worker", *args]
    if log is None:
        return subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
