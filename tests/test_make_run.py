"""`make run`'s launcher from a clean state, driven end to end.

It starts a private PostgreSQL cluster (no DATABASE_URL), a Celery worker and beat (Redis is
reachable), migrates, seeds the demo and serves. A real Chromium then signs in as a seeded
resident and as the staff admin. One SIGINT must stop everything, the cluster included.
"""

from __future__ import annotations

import os
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
from playwright.sync_api import Browser, expect

from portal.web.demo import DEMO_PASSWORD

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    state = Path(tempfile.mkdtemp(prefix="smp-make-run-"))
    state.chmod(0o755)  # the postgres system user must reach the cluster folder
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DJANGO_"))}
    env["DJANGO_SETTINGS_MODULE"] = "portal.settings.local"
    env.pop("REDIS_URL", None)
    log = (state / "launcher.log").open("w")
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
        env=env,
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
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
        shutil.rmtree(state, ignore_errors=True)


def test_the_private_cluster_and_the_worker_are_up(
    launched: tuple[str, subprocess.Popen[str], Path],
) -> None:
    _, _, state = launched
    assert (state / ".pgdata" / "data" / "postmaster.pid").exists()
    assert (state / ".pgdata" / "run" / ".s.PGSQL.5432").exists()
    text = (state / "launcher.log").read_text()
    assert "started celery worker" in text and "started celery beat" in text
    assert "chen@example.com" in text  # seed_demo printed the logins


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
    assert process.wait(timeout=60) == 0
    assert not (state / ".pgdata" / "data" / "postmaster.pid").exists()
    text = (state / "launcher.log").read_text()
    assert "private PostgreSQL stopped" in text
    leftovers = subprocess.run(
        ["pgrep", "-f", str(state)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftovers == []


def test_a_killed_launcher_leaves_nothing_the_next_run_cannot_clean() -> None:
    state = Path(tempfile.mkdtemp(prefix="smp-make-run-kill-"))
    state.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DJANGO_"))}
    env["DJANGO_SETTINGS_MODULE"] = "portal.settings.local"
    command = [
        sys.executable,
        str(ROOT / "scripts" / "run.py"),
        "--state-dir",
        str(state),
        "--no-seed",
    ]
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
        assert second.wait(timeout=60) == 0
        log.close()
        text = (state / "second.log").read_text()
        assert "left by an earlier run" in text
        assert "already running; using it" in text
        assert not (state / ".pgdata" / "data" / "postmaster.pid").exists()
        assert (
            subprocess.run(["pgrep", "-f", str(state)], capture_output=True, check=False).stdout
            == b""
        )
    finally:
        shutil.rmtree(state, ignore_errors=True)
