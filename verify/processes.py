"""The real processes a scenario runs against and breaks: a PostgreSQL cluster, a Redis server
and Celery workers of its own, never the machine's shared services.

The cluster is `make run`'s private cluster (scripts/run.py) in `.verify/`, reachable only
through its Unix socket, with PostgreSQL's durable defaults: what survives a crash here is what
survives it in every configuration the project ships. Redis listens on a free port of its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The launcher of `make run` is a script, imported the way the bench scripts import theirs.
sys.path.insert(0, str(ROOT / "scripts"))

from run import PrivateCluster, group_members, signal_group  # noqa: E402


def say(message: str) -> None:
    print(f"[make verify] {message}", flush=True)


def _quiet(message: str) -> None:
    """The cluster's own progress lines; scenarios say what they do instead."""


class Cluster(PrivateCluster):
    """The private cluster, plus the two things a fault scenario needs: a crash and a reset."""

    def __init__(self, base: Path) -> None:
        super().__init__(base, say=_quiet)
        self.template = self.root / "template"

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def crash(self) -> None:
        """SIGKILL the postmaster and every backend at once, as a power cut would.

        Killing only the postmaster leaves its backends running until they notice, and
        PostgreSQL refuses to start while they hold the old shared memory. The next start
        runs crash recovery from the WAL, which is the point.
        """
        pid = self.postmaster_pid()
        if pid is None:
            raise RuntimeError("the verify cluster is not running")
        victims = [pid, *_children(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            for victim in victims:
                # They are ours to reap (see become_subreaper): a zombie postmaster would
                # still hold its lock files, and the restart would take it for a live one.
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(victim, os.WNOHANG)
            if not any(os.path.exists(f"/proc/{victim}") for victim in victims):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL processes survived SIGKILL for 30 s")
            time.sleep(0.05)

    def restart(self) -> None:
        self.started_here = False
        self.start()

    def save_template(self) -> None:
        """Keep a copy of the stopped, migrated cluster; each scenario starts from it."""
        self.stop()
        if self.template.exists():
            shutil.rmtree(self.template)
        _copy(self.data, self.template)
        self.start()

    def reset(self) -> None:
        """The migrated, empty database again, in seconds rather than a migrate's minute."""
        if self.running():
            self.crash()  # a scenario may have left it in any state; nothing here is kept
        shutil.rmtree(self.data)
        _copy(self.template, self.data)
        self.started_here = False
        self.start()


def _copy(source: Path, target: Path) -> None:
    # cp -a keeps the postgres user's ownership and the 0700 mode PostgreSQL insists on.
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def become_subreaper() -> None:
    """Adopt our orphaned descendants, the postmaster that pg_ctl detaches included.

    A crash leaves the killed postmaster a zombie until its parent reaps it, and PID 1 of a
    container may never do so; a zombie's pid still answers kill(pid, 0), so PostgreSQL and
    pg_ctl would take it for a running server.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    if libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A Redis of our own on a free port, stopped and started again on that same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while not self.answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Gone at once, as in an outage: SIGKILL, nothing saved."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(b"FLUSHALL\r\n")
            conn.recv(16)


class Worker:
    """`celery worker` as `make run` starts it (prefork, 2 processes), in its own group.

    Two processes matter: with one, no request for the next message is pending when Redis goes
    away, and the outage that stopped `make run`'s worker for good (issue 12) never shows.
    """

    def __init__(self, env: dict[str, str], log: Path, *, queues: str) -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                "-Q",
                queues,
                "--concurrency",
                "2",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker and its pool at once: no clean shutdown, no acknowledgement."""
        signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait()
        deadline = time.monotonic() + 15
        while group_members(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.alive:
            signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        signal_group(self.process.pid, signal.SIGKILL)  # leftovers of its pool, if any


class WebServer:
    """gunicorn serving the portal on a free port, in its own process group."""

    def __init__(self, env: dict[str, str], log: Path, *, workers: int = 2) -> None:
        self.port = free_port()
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "portal.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--timeout",
                "120",
            ],
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start; see {log}")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait()
