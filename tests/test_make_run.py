"""`make run`'s launcher from a clean state, driven end to end.

It starts a private PostgreSQL cluster (no DATABASE_URL), a Celery worker and beat (Redis is
reachable), migrates, seeds the demo and serves. A real Chromium then signs in as a seeded
resident and as the staff admin. One SIGINT must stop everything, the cluster included, and
so must two SIGTERMs or two SIGINTs in a row, even in the middle of the first setup.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from playwright.sync_api import Browser, expect

from web.demo import DEMO_PASSWORD, PEOPLE, STAFF_ADMIN

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.browser]


# Only keeps a broken shutdown from hanging the suite: the tests wait for the process to
# exit, and a loaded machine may need far longer than a quiet one.
EXIT_BOUND = 300


def _exit_code(process: subprocess.Popen[str], what: str) -> int:
    try:
        return process.wait(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"{what} had not exited after {EXIT_BOUND} s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _launcher_redis() -> Iterator[str]:
    """This test worker's own broker database, emptied before and after.

    The launcher's Celery worker must neither run tasks that other tests left queued there nor
    share database 0 with a developer's own `make run` on the same machine.
    """
    url = str(settings.CELERY_BROKER_URL)
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def _launcher_env(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DJANGO_"))}
    env["DJANGO_SETTINGS_MODULE"] = "portal.settings.local"
    env["REDIS_URL"] = redis_url
    return env


def _state_dir(prefix: str) -> Path:
    state = Path(tempfile.mkdtemp(prefix=prefix))
    state.chmod(0o755)  # the postgres system user must reach the cluster folder
    return state


def _wait_for_line(log: Path, pattern: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 180
    while not re.search(pattern, log.read_text()):
        if process.poll() is not None:
            raise AssertionError(f"the launcher exited before printing {pattern!r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the launcher did not print {pattern!r}")
        time.sleep(0.1)


def _wait_for(url: str, process: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the launcher exited early with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@pytest.fixture(scope="module")
def launched() -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    state = _state_dir("smp-make-run-")
    port = _free_port()
    with _launcher_redis() as redis_url, (state / "launcher.log").open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "scripts" / "run.py"),
                "--port",
                str(port),
                "--state-dir",
                str(state),
                # A week of readings is enough to see the charts' data arrive; a year takes a
                # minute that the suite can spend elsewhere.
                "--demo-days",
                "7",
            ],
            cwd=ROOT,
            env=_launcher_env(redis_url),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            _wait_for(f"http://127.0.0.1:{port}/accounts/login/", process)
            yield f"http://127.0.0.1:{port}", process, state
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=EXIT_BOUND)
                except subprocess.TimeoutExpired:
                    process.kill()
            shutil.rmtree(state, ignore_errors=True)


def test_the_private_cluster_and_the_worker_are_up(
    launched: tuple[str, subprocess.Popen[str], Path],
) -> None:
    _, _, state = launched
    assert (state / ".pgdata" / "data" / "postmaster.pid").exists()
    assert (state / ".pgdata" / "run" / ".s.PGSQL.5432").exists()
    # Commits are durable before anything is acknowledged, in the cluster `make run` ships too.
    settings_shown = subprocess.run(
        [
            "psql",
            "-h",
            str(state / ".pgdata" / "run"),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atc",
            "SELECT name || '=' || setting FROM pg_settings "
            "WHERE name IN ('fsync', 'synchronous_commit') ORDER BY name",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert settings_shown == ["fsync=on", "synchronous_commit=on"]
    text = (state / "launcher.log").read_text()
    assert "started celery worker" in text and "started celery beat" in text
    # seed_demo said what it was doing while it did it, then printed every login.
    stages = ["people:", "meters:", "generating readings:", "importing readings:", "tariffs:"]
    for stage in [*stages, "wallets, top-ups and daily charges:", "shortage warnings"]:
        assert re.search(rf"\[seed_demo +\d+ s\] {stage}", text), stage
    assert re.search(r"batch 1 of \d+ done", text)
    assert re.search(r"serving on http://127\.0\.0\.1:\d+/ \(ready in \d+ s\)", text)
    for email in [STAFF_ADMIN[0], *(person[0] for person in PEOPLE)]:
        assert email in text


def test_a_resident_signs_in_through_the_login_page(
    launched: tuple[str, subprocess.Popen[str], Path], browser: Browser
) -> None:
    base, _, _ = launched
    page = browser.new_page()
    page.goto(f"{base}/")
    expect(page).to_have_url(f"{base}/accounts/login/?next=/")
    page.get_by_label("Email").fill("chen@example.com")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_role("heading", name="My accounts")).to_be_visible()
    page.get_by_role("link", name="RH-0001").click()
    expect(page.get_by_role("heading", name="Chen household")).to_be_visible()
    page.close()


def test_the_staff_admin_signs_in_and_reaches_the_admin(
    launched: tuple[str, subprocess.Popen[str], Path], browser: Browser
) -> None:
    base, _, _ = launched
    page = browser.new_page()
    page.goto(f"{base}/admin/")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(f"{base}/admin/")
    expect(page.get_by_role("link", name="Audit log entries")).to_be_visible()
    page.close()


def test_one_interrupt_stops_everything(
    launched: tuple[str, subprocess.Popen[str], Path],
) -> None:
    _, process, state = launched
    process.send_signal(signal.SIGINT)
    assert _exit_code(process, "make run after one interrupt") == 0
    assert not (state / ".pgdata" / "data" / "postmaster.pid").exists()
    text = (state / "launcher.log").read_text()
    assert "private PostgreSQL stopped" in text
    leftovers = subprocess.run(
        ["pgrep", "-f", str(state)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftovers == []


# --- Stopping: two signals in a row, at any moment, leave nothing behind --------------------


def _processes() -> dict[int, tuple[int, int, str, str]]:
    """Every process on the machine: pid -> (ppid, process group, start time, state)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            # pid (comm) state ppid pgrp ... starttime (the 22nd field); comm may hold spaces.
            fields = stat[stat.rindex(")") + 2 :].split()
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[19], fields[0])
    return table


def _descendants(pid: int) -> set[tuple[int, str]]:
    """The processes below `pid`, with their start times (a pid may be reused later)."""
    table = _processes()
    found = {pid}
    while True:
        more = {child for child, (ppid, *_) in table.items() if ppid in found} - found
        if not more:
            break
        found |= more
    return {(child, table[child][2]) for child in found - {pid}}


def _still_running(processes: set[tuple[int, str]]) -> list[int]:
    table = _processes()
    return [
        pid
        for pid, started in processes
        if pid in table and table[pid][2] == started and table[pid][3] not in {"Z", "X"}
    ]


def _group_members(pgid: int) -> list[int]:
    return [
        pid
        for pid, (_, group, _, state) in _processes().items()
        if group == pgid and state not in {"Z", "X"}
    ]


def _postmaster(state: Path) -> tuple[int, str]:
    pid = int((state / ".pgdata" / "data" / "postmaster.pid").read_text().split()[0])
    return pid, _processes()[pid][2]


def _pgrep(state: Path) -> list[str]:
    """The processes whose command line names the state folder (the cluster's, beat)."""
    found = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True, check=False)
    return found.stdout.split()


def _port_free(port: int) -> bool:
    """Nothing listens on the port (a server sets SO_REUSEADDR too: TIME_WAIT is no server)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def _launch(state: Path, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    with log.open("w") as out:
        return subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "scripts" / "run.py"),
                "--no-seed",
                "--port",
                str(port),
                "--state-dir",
                str(state),
                "--stop-grace",
                "3",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


@pytest.fixture(scope="module")
def migrated() -> Iterator[Path]:
    """A state folder with a private cluster made, migrated and stopped.

    The stop tests start from copies of it, and so spend their time stopping, not migrating.
    """
    state = _state_dir("smp-make-run-migrated-")
    try:
        with _launcher_redis() as redis_url:
            port = _free_port()
            launcher = _launch(state, port, _launcher_env(redis_url), state / "launcher.log")
            try:
                _wait_for(f"http://127.0.0.1:{port}/healthz", launcher)
                launcher.send_signal(signal.SIGTERM)
                assert launcher.wait(timeout=120) == 0
            finally:
                if launcher.poll() is None:
                    launcher.kill()
        yield state
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _copy(migrated: Path, prefix: str) -> Path:
    state = _state_dir(prefix)
    # cp -a keeps the files' owner: the cluster belongs to the postgres user under root.
    subprocess.run(["cp", "-a", str(migrated / ".pgdata"), str(state)], check=True)
    return state


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_two_stop_signals_in_a_row_leave_no_process_and_free_the_port(
    signum: signal.Signals, migrated: Path
) -> None:
    state = _copy(migrated, "smp-make-run-stop-")
    port = _free_port()
    log = state / "launcher.log"
    try:
        with _launcher_redis() as redis_url:
            launcher = _launch(state, port, _launcher_env(redis_url), log)
            try:
                _wait_for(f"http://127.0.0.1:{port}/healthz", launcher)
                groups = [int(pid) for pid in (state / ".local" / "run.pids").read_text().split()]
                assert len(groups) == 3  # the Celery worker, beat and the web server
                started = _descendants(launcher.pid) | {_postmaster(state)}
                # A web server that ignores SIGTERM (stopped, here) holds the shutdown open, so
                # the second signal lands while the launcher stops, whatever the machine's speed.
                os.killpg(groups[-1], signal.SIGSTOP)
                launcher.send_signal(signum)
                _wait_for_line(log, "received: stopping everything", launcher)
                launcher.send_signal(signum)
                assert launcher.wait(timeout=120) == 0
            finally:
                if launcher.poll() is None:
                    launcher.kill()
        text = log.read_text()
        assert f"{signum.name} again: already stopping" in text
        assert "web server did not stop within 3 s: killing its process group" in text
        assert "KeyboardInterrupt" not in text
        assert [pgid for pgid in groups if _group_members(pgid)] == []
        assert _still_running(started) == []
        assert "private PostgreSQL stopped" in text
        assert not (state / ".pgdata" / "data" / "postmaster.pid").exists()
        assert not (state / ".local" / "run.pids").exists()
        assert _port_free(port)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_two_stop_signals_during_the_first_setup_leave_a_cluster_the_next_run_uses() -> None:
    state = _state_dir("smp-make-run-setup-")
    try:
        with _launcher_redis() as redis_url:
            env = _launcher_env(redis_url)
            first = _launch(state, _free_port(), env, state / "first.log")
            _wait_for_line(state / "first.log", "creating a private PostgreSQL cluster", first)
            first.send_signal(signal.SIGTERM)
            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=120) == 0
            assert not (state / ".pgdata" / "data" / "postmaster.pid").exists()
            assert _pgrep(state) == []
            # Whatever the signals interrupted, the next run finds a whole cluster and serves.
            port = _free_port()
            second = _launch(state, port, env, state / "second.log")
            try:
                _wait_for(f"http://127.0.0.1:{port}/healthz", second)
                second.send_signal(signal.SIGTERM)
                second.send_signal(signal.SIGTERM)
                assert second.wait(timeout=120) == 0
            finally:
                if second.poll() is None:
                    second.kill()
        assert not (state / ".pgdata" / "data" / "postmaster.pid").exists()
        assert _pgrep(state) == []
        assert _port_free(port)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_a_killed_launcher_leaves_nothing_the_next_run_cannot_clean(migrated: Path) -> None:
    state = _copy(migrated, "smp-make-run-kill-")
    command = [
        sys.executable,
        str(ROOT / "scripts" / "run.py"),
        "--state-dir",
        str(state),
        "--no-seed",
    ]
    with _launcher_redis() as redis_url:
        env = _launcher_env(redis_url)
        try:
            port = _free_port()
            first = subprocess.Popen(
                [*command, "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                text=True,
            )
            _wait_for(f"http://127.0.0.1:{port}/healthz", first)
            first.kill()  # SIGKILL: no cleanup at all
            first.wait()
            # The next run adopts the cluster, stops the orphaned server and starts afresh.
            port = _free_port()
            log = (state / "second.log").open("w")
            second = subprocess.Popen(
                [*command, "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
            _wait_for(f"http://127.0.0.1:{port}/healthz", second)
            second.send_signal(signal.SIGINT)
            assert _exit_code(second, "the second make run after one interrupt") == 0
            log.close()
            text = (state / "second.log").read_text()
            assert "left by an earlier run" in text
            assert "already running; using it" in text
            assert not (state / ".pgdata" / "data" / "postmaster.pid").exists()
            assert _pgrep(state) == []
        finally:
            shutil.rmtree(state, ignore_errors=True)


def test_the_readme_lists_every_login_that_seed_demo_prints() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("Demo logins after `make run`") :]
    table = section[: section.index("\n\n", section.index("| login |"))]
    logins = [STAFF_ADMIN[0], *(email for email, *_ in PEOPLE)]
    assert [email for email in logins if f"`{email}`" not in table] == []


# --- A worker that exits is started again; the web server's exit stops everything ----------


def test_a_crashed_worker_is_started_again_and_the_web_servers_exit_stops_everything(
    migrated: Path,
) -> None:
    state = _copy(migrated, "smp-make-run-restart-")
    port = _free_port()
    log = state / "launcher.log"
    pids = state / ".local" / "run.pids"
    try:
        with _launcher_redis() as redis_url:
            launcher = _launch(state, port, _launcher_env(redis_url), log)
            try:
                _wait_for(f"http://127.0.0.1:{port}/healthz", launcher)
                worker, beat, server = (int(pid) for pid in pids.read_text().split())
                _wait_for_line(log, r"celery@\S+ ready", launcher)
                # The worker's main process dies as after a crash; its pool processes remain.
                os.kill(worker, signal.SIGKILL)
                _wait_for_line(
                    log, r"celery worker exited with status -9; starting it again in 1 s", launcher
                )
                _wait_for_line(log, r"started celery worker again \(pid \d+\)", launcher)
                groups = [int(pid) for pid in pids.read_text().split()]
                assert worker not in groups and [beat, server] == groups[1:]
                assert _group_members(worker) == []  # the old pool went with it
                deadline = time.monotonic() + 120
                while len(re.findall(r"celery@\S+ ready", log.read_text())) < 2:
                    assert launcher.poll() is None and time.monotonic() < deadline
                    time.sleep(0.2)
                _wait_for(f"http://127.0.0.1:{port}/healthz", launcher)
                # The web server is what a developer uses: its exit stops everything.
                os.killpg(server, signal.SIGKILL)
                assert launcher.wait(timeout=120) == 1
            finally:
                if launcher.poll() is None:
                    launcher.kill()
        text = log.read_text()
        assert "web server exited with status -9; stopping the rest" in text
        assert [pgid for pgid in [*groups, worker] if _group_members(pgid)] == []
        assert "private PostgreSQL stopped" in text
        assert not (state / ".pgdata" / "data" / "postmaster.pid").exists()
        assert not pids.exists()
        assert _port_free(port)
    finally:
        shutil.rmtree(state, ignore_errors=True)
