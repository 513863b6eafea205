"""`make run` starts a crashed Celery worker or beat again, waiting longer after each exit in a
row, and gives up on one that keeps exiting (scripts/run.py, RestartPolicy). The launcher with
real processes: tests/test_make_run.py::test_a_crashed_worker_is_started_again_*."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _launcher_module() -> Any:
    # scripts/ is no package: load the launcher the way `make run` runs it, from its file.
    spec = importlib.util.spec_from_file_location("make_run_launcher", ROOT / "scripts" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_exits_in_a_row_wait_longer_each_time_then_the_launcher_gives_up() -> None:
    policy = _launcher_module().RestartPolicy()
    waits = [policy.after_exit(3.0) for _ in range(policy.limit)]
    assert waits == [1.0, 2.0, 5.0, 10.0, 30.0]
    assert policy.after_exit(3.0) is None


def test_a_child_that_ran_a_while_before_it_exited_starts_a_new_series() -> None:
    policy = _launcher_module().RestartPolicy()
    assert [policy.after_exit(1.0) for _ in range(4)] == [1.0, 2.0, 5.0, 10.0]
    assert policy.after_exit(policy.stable_after) == 1.0
    assert policy.after_exit(0.5) == 2.0
