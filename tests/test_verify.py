"""The fast subset of `make verify`, in `make test`: the same scenarios, at a smaller scale,
against a PostgreSQL cluster, a Redis and workers of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("verify")]


def test_the_fast_fault_scenarios_hold() -> None:
    # Nothing of the test settings' environment: the scenarios configure their own processes.
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}
    result = subprocess.run(
        [sys.executable, "-m", "verify", "--fast"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    table = result.stdout[result.stdout.find("| scenario |") :]
    assert result.returncode == 0, f"{table}\n{result.stderr[-4000:]}"
    assert "scenarios hold" in result.stdout
