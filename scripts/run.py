"""`make run`: everything a developer needs, started in order and stopped with one Ctrl-C.

1. PostgreSQL: DATABASE_URL if set, else a private cluster inside the project (.pgdata/),
   reachable only through a Unix socket in that folder, so it never clashes with a server on
   port 5432.
2. Redis: REDIS_URL (default redis://127.0.0.1:6379/0) if it answers; then a Celery worker and
   beat run too. Otherwise tasks run inline (CELERY_TASK_ALWAYS_EAGER) and the cache is local.
3. migrate, seed_demo (prints its progress, then the logins), then the web server on
   http://127.0.0.1:8000.

Stopping. Every child, setup steps included, runs in its own session, so that a Ctrl-C in the
terminal reaches only this launcher (and make), and its process group is recorded in
.local/run.pids. The first SIGINT, SIGTERM or SIGHUP asks for a stop. The signal handler only
records it and never raises (a KeyboardInterrupt can land anywhere, even inside the shutdown's
own cleanup); the launcher notices the request at its next check, between steps. Stopping sends
SIGTERM to every child's process group, gives each child --stop-grace seconds, then SIGKILLs
whatever is left of its group, and stops the private cluster. Further signals during the stop
are noted and change nothing, so pressing Ctrl-C again is safe.

A Celery worker or beat that exits on its own (a crash, an unrecoverable error) is started
again after a short wait that grows with each exit in a row (RESTART_DELAYS), and the launcher
says so; one that keeps exiting within a minute of its start (RESTART_LIMIT times in a row) is
given up on and everything stops, as it does when the web server exits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from portal.lib.devcluster import DATABASE_NAME, cluster_database_url, cluster_paths  # noqa: E402

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
STOP_GRACE = 10.0  # default seconds a child gets after SIGTERM before its group is SIGKILLed
POLL = 0.2  # seconds between two looks at the children and at a pending stop request
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Rough estimates of a new private cluster's first setup on an idle development machine (a busy
# machine takes several times as long), printed up front so that nobody takes the wait for a hang.
FIRST_SETUP_SECONDS = {"migrate": 10, "seed a year": 30}
# Seconds before restarting a worker or beat that exited: the 1st, 2nd, ... exit in a row.
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
RESTART_LIMIT = 5  # exits in a row, each soon after its start, before the launcher gives up
STABLE_AFTER = 60.0  # a child that ran this long before it exited starts a new series


def log(message: str) -> None:
    # A closed terminal (SIGHUP) makes every write fail; the shutdown must go on regardless.
    with contextlib.suppress(OSError, ValueError):
        print(f"[make run] {message}", flush=True)


def _run(command: list[str], *, check: bool, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    # A session of its own: a Ctrl-C in the terminal must not kill initdb or pg_ctl halfway.
    return subprocess.run(command, check=check, start_new_session=True, **kwargs)


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; run them as the postgres system user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def group_members(pgid: int) -> list[int]:
    """The live processes of a process group (zombies, already dead, do not count)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended while we looked
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in {"Z", "X"}:
            members.append(int(entry.name))
    return members


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class PrivateCluster:
    """A PostgreSQL 15 cluster in `base/.pgdata`, listening only on a Unix socket there."""

    def __init__(self, base: Path, say: Callable[[str], None] = log) -> None:
        self.base = base
        self.say = say  # `make verify` runs clusters of its own and says so in its own words
        self.data, self.socket_dir = cluster_paths(base)
        self.root = self.data.parent
        self.logfile = self.root / "postgresql.log"
        self.started_here = False

    @property
    def url(self) -> str:
        return cluster_database_url(self.base)

    @property
    def exists(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
            # The postgres user must be able to reach the folder from /: add search (x, not
            # read) permission for others only where it is missing, and say so.
            path = self.root
            while path != path.parent:
                mode = path.stat().st_mode
                if not mode & 0o001:
                    path.chmod(mode | 0o001)
                    self.say(f"allowed the postgres user to traverse {path} (chmod o+x)")
                path = path.parent

    def running(self) -> bool:
        result = _run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"]),
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def _initdb(self) -> None:
        self.say(f"creating a private PostgreSQL cluster in {self.data}")
        # Made aside and renamed into place, so that an interrupted initdb never leaves a
        # half-made cluster that the next run would take for a real one.
        fresh = self.root / "data.initdb"
        if fresh.exists():
            shutil.rmtree(fresh)
        _run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(fresh),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        fresh.rename(self.data)

    def start(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise SetupError(
                f"PostgreSQL 15 server binaries are not in {PG_BIN}: install postgresql-15, "
                "set PG_BIN, or set DATABASE_URL to use an existing server"
            )
        self._prepare_dirs()
        if not self.exists:
            self._initdb()
        if self.running():
            # Left over from a launcher that was killed; it is ours, so stop it at the end too.
            self.say("private PostgreSQL cluster already running; using it")
            self.started_here = True
        else:
            # PostgreSQL's durable defaults (fsync, synchronous_commit on): a webhook answers
            # "credited" only after its commit is on disk, in this cluster too (issue 12).
            options = f"-k {self.socket_dir} -c listen_addresses='' -c max_connections=50"
            # Before the start, not after: a start that fails halfway may still leave a server.
            self.started_here = True
            _run(
                _as_postgres(
                    [
                        str(PG_BIN / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-l",
                        str(self.logfile),
                        "-o",
                        options,
                        "-w",
                        "start",
                    ]
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
            self.say(f"private PostgreSQL started (socket in {self.socket_dir})")
        exists = _run(
            [
                "psql",
                "-h",
                str(self.socket_dir),
                "-U",
                "postgres",
                "-tAc",
                "SELECT datname FROM pg_database",
                "postgres",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        if DATABASE_NAME not in exists.stdout.split():
            _run(
                ["createdb", "-h", str(self.socket_dir), "-U", "postgres", DATABASE_NAME],
                check=True,
            )

    def stop(self) -> None:
        if not self.started_here or not self.running():
            return
        pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30", "stop"]
        fast = _run(_as_postgres([*pg_ctl, "-m", "fast"]), check=False, stdout=subprocess.DEVNULL)
        if fast.returncode != 0 and self.running():
            # A fast stop waits for nothing but may still time out (a backend stuck in I/O).
            self.say("private PostgreSQL did not stop in 30 s; stopping it at once (-m immediate)")
            _run(_as_postgres([*pg_ctl, "-m", "immediate"]), check=False, stdout=subprocess.DEVNULL)
        self.say("private PostgreSQL stopped")


class SetupError(Exception):
    """A precondition of `make run` is missing; the message says what to do."""


class StopRequested(Exception):
    """A stop signal arrived: leave the setup at the next step and stop everything."""


def redis_reachable(url: str) -> bool:
    """True if a Redis server answers PING at `url` within a second."""
    parsed = urlparse(url)
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or 6379
    try:
        with socket.create_connection((host, port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def port_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:`port` (connections in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class RestartPolicy:
    """When to start again a child that exited by itself, and when to give up on it."""

    delays: tuple[float, ...] = RESTART_DELAYS
    limit: int = RESTART_LIMIT
    stable_after: float = STABLE_AFTER
    exits_in_a_row: int = 0

    def after_exit(self, ran_for: float) -> float | None:
        """Seconds to wait before the next start, or None: it keeps exiting, give up."""
        if ran_for >= self.stable_after:
            self.exits_in_a_row = 0
        self.exits_in_a_row += 1
        if self.exits_in_a_row > self.limit:
            return None
        return self.delays[min(self.exits_in_a_row, len(self.delays)) - 1]


@dataclass
class Child:
    """A process the launcher started, leader of its own session and process group."""

    name: str
    process: subprocess.Popen[bytes]
    command: list[str]
    restart: RestartPolicy | None = None  # None: its exit stops everything
    started_at: float = 0.0
    restart_at: float | None = None  # exited; to be started again at this time

    @property
    def pgid(self) -> int:
        return self.process.pid


class Launcher:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.grace: float = args.stop_grace
        self.children: list[Child] = []
        self.cluster: PrivateCluster | None = None
        self.with_worker = False
        self.env = dict(os.environ)
        self.env.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.local")
        # Children's lines appear as they are written, in order, even into a pipe or a file.
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.python = sys.executable
        self.began = time.monotonic()
        # Written by the signal handler, read by the main loop.
        self.stop_requested = False
        self.signal_count = 0
        self.signal_name = ""
        self.signals_noted = 0
        self.stopped = False

    # --- Signals --------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        # SIGINT too: Python's default raises KeyboardInterrupt, and a launcher started in the
        # background would even inherit SIGINT ignored.
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Record only: never raise, never print (print is not reentrant).
        self.signal_count += 1
        self.signal_name = signal.Signals(signum).name
        self.stop_requested = True

    def _check(self) -> None:
        if self.stop_requested:
            raise StopRequested

    def _note_signals(self) -> None:
        """Say what signals arrived since the last look (one line, however many)."""
        count = self.signal_count
        if count == self.signals_noted:
            return
        if self.signals_noted == 0:
            log(f"{self.signal_name} received: stopping everything")
        else:
            log(f"{self.signal_name} again: already stopping (at most {self.grace:.0f} s a child)")
        self.signals_noted = count

    # --- Children -------------------------------------------------------------------------

    @property
    def pidfile(self) -> Path:
        return Path(self.args.state_dir) / ".local" / "run.pids"

    def _write_pidfile(self) -> None:
        # A child waiting for its restart has no group left (its id may be reused).
        running = [child for child in self.children if child.restart_at is None]
        if running:
            self.pidfile.parent.mkdir(parents=True, exist_ok=True)
            self.pidfile.write_text("".join(f"{child.pgid}\n" for child in running))
        else:
            self.pidfile.unlink(missing_ok=True)

    def _popen(self, command: list[str]) -> subprocess.Popen[bytes]:
        # Each child leads its own process group, so that stopping it also stops whatever it
        # started (runserver's reloader, the worker's pool).
        return subprocess.Popen(command, env=self.env, cwd=BASE_DIR, start_new_session=True)

    def spawn(self, name: str, command: list[str], *, restart: bool = False) -> Child:
        child = Child(
            name,
            self._popen(command),
            command,
            restart=RestartPolicy() if restart else None,
            started_at=time.monotonic(),
        )
        self.children.append(child)
        self._write_pidfile()
        return child

    def step(self, what: str, *arguments: str) -> None:
        """Run a manage.py command to its end, as a child that a stop signal stops too."""
        self._check()
        log(what)
        began = time.monotonic()
        child = self.spawn(arguments[0], [self.python, str(BASE_DIR / "manage.py"), *arguments])
        while (code := child.process.poll()) is None:
            self._check()  # the child stays in self.children: stop() ends it with the rest
            time.sleep(POLL)
        self.children.remove(child)
        self._write_pidfile()
        if code != 0:
            raise subprocess.CalledProcessError(code, child.process.args)
        log(f"{arguments[0]} done in {time.monotonic() - began:.0f} s")

    def _stop_groups(
        self, groups: Sequence[tuple[str, int, subprocess.Popen[bytes] | None]]
    ) -> None:
        """SIGTERM each group, give it --stop-grace seconds, then SIGKILL what is left of it.

        A child leader is reaped only at the end: until then its pid, and so its group id,
        cannot be given to another process, and signalling the group is safe.
        """
        for name, pgid, _ in groups:
            if group_members(pgid):
                log(f"stopping {name}")
                signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for name, pgid, process in groups:
            while group_members(pgid) and time.monotonic() < deadline:
                self._note_signals()
                time.sleep(POLL)
            if group_members(pgid):
                log(f"{name} did not stop within {self.grace:.0f} s: killing its process group")
                signal_group(pgid, signal.SIGKILL)
                killed = time.monotonic() + self.grace
                while group_members(pgid) and time.monotonic() < killed:
                    time.sleep(POLL)
            if process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=self.grace)
            self._note_signals()

    def reap_leftovers(self) -> None:
        """Stop the process groups a killed launcher left running (recorded in run.pids)."""
        if not self.pidfile.exists():
            return
        groups = []
        for line in self.pidfile.read_text().split():
            if line.isdigit() and group_members(int(line)):
                groups.append((f"process group {line} left by an earlier run", int(line), None))
        self._stop_groups(groups)
        self.pidfile.unlink()

    # --- Start ----------------------------------------------------------------------------

    def configure(self) -> None:
        if self.env.get("DATABASE_URL"):
            log("using DATABASE_URL from the environment")
        else:
            self.cluster = PrivateCluster(Path(self.args.state_dir))
            if not self.cluster.exists:
                self._first_setup_note()
            self.cluster.start()
            self.env["DATABASE_URL"] = self.cluster.url
            self._check()  # a signal during the cluster's start waited for it to finish
        redis_url = self.env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        if redis_reachable(redis_url):
            self.env["REDIS_URL"] = redis_url
            self.env["CELERY_TASK_ALWAYS_EAGER"] = "0"
            self.with_worker = True
            log(f"Redis answers at {redis_url}: Celery worker and beat will run")
        else:
            self.env.pop("REDIS_URL", None)
            self.env["CELERY_TASK_ALWAYS_EAGER"] = "1"
            self.with_worker = False
            log("no Redis reachable: tasks run inline and the cache is in-process")
        self.env["PORTAL_BASE_URL"] = f"http://127.0.0.1:{self.args.port}"

    def _first_setup_note(self) -> None:
        seconds = FIRST_SETUP_SECONDS["migrate"]
        work = "creating and migrating it"
        if not self.args.no_seed:
            # Seeding time grows with the days of readings; a year is the default.
            seconds += round(FIRST_SETUP_SECONDS["seed a year"] * self.args.demo_days / 365)
            work = f"creating it, migrating and seeding {self.args.demo_days} days of demo readings"
        log(
            f"a new private cluster: {work} takes about {seconds} s on an idle 2-core machine, "
            f"up to {3 * seconds} s on a busy one; later runs start in seconds"
        )

    def start(self) -> None:
        self.reap_leftovers()
        self._check()
        if not port_free(self.args.port):
            raise SetupError(
                f"port {self.args.port} is taken by another program: stop it, or choose "
                "another port (PORT=8001 make run)"
            )
        self.configure()
        self.step("migrating the database", "migrate", "--no-input", "-v", "0")
        if not self.args.no_seed:
            self.step(
                f"seeding the demo ({self.args.demo_days} days of readings; progress below)",
                "seed_demo",
                "--days",
                str(self.args.demo_days),
            )
        self._check()
        state = Path(self.args.state_dir) / ".local"
        state.mkdir(exist_ok=True)
        if self.with_worker:
            celery = [self.python, "-m", "celery", "-A", "portal"]
            worker = self.spawn(
                "celery worker",
                [
                    *celery,
                    "worker",
                    "-Q",
                    "default,notifications,readings,billing",
                    "--concurrency",
                    "2",
                    "--loglevel",
                    "INFO",
                ],
                restart=True,
            )
            log(f"started celery worker (pid {worker.pgid})")
            beat = self.spawn(
                "celery beat",
                [
                    *celery,
                    "beat",
                    "--loglevel",
                    "INFO",
                    "--schedule",
                    str(state / "celerybeat-schedule"),
                ],
                restart=True,
            )
            log(f"started celery beat (pid {beat.pgid})")
        runserver = [
            self.python,
            str(BASE_DIR / "manage.py"),
            "runserver",
            f"127.0.0.1:{self.args.port}",
        ]
        if not self.args.reload:
            runserver.append("--noreload")
        server = self.spawn("web server", runserver)
        log(f"started web server (pid {server.pgid})")
        log(
            f"serving on http://127.0.0.1:{self.args.port}/ (ready in "
            f"{time.monotonic() - self.began:.0f} s) - press Ctrl-C once to stop everything"
        )

    def wait(self) -> int:
        """Serve until a stop signal (0), or until a child exits for good (1).

        The web server's exit stops everything; a worker or beat is started again (after
        its RestartPolicy's wait) unless it keeps exiting soon after each start.
        """
        while not self.stop_requested:
            now = time.monotonic()
            for child in self.children:
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        self._restart(child)
                    continue
                code = child.process.poll()
                if code is None:
                    continue
                if child.restart is None:
                    log(f"{child.name} exited with status {code}; stopping the rest")
                    return 1
                delay = child.restart.after_exit(now - child.started_at)
                if delay is None:
                    log(
                        f"{child.name} exited with status {code}: {child.restart.limit} exits "
                        f"in a row, each within {child.restart.stable_after:.0f} s of its start; "
                        "stopping the rest"
                    )
                    return 1
                log(
                    f"{child.name} exited with status {code}; starting it again in {delay:.0f} s "
                    f"(exit {child.restart.exits_in_a_row} in a row; the launcher gives up "
                    f"after {child.restart.limit})"
                )
                # Whatever it started (the worker's pool) goes with it before the new start.
                self._stop_groups([(f"what is left of {child.name}", child.pgid, child.process)])
                child.restart_at = time.monotonic() + delay
                self._write_pidfile()
            time.sleep(POLL)
        return 0

    def _restart(self, child: Child) -> None:
        child.process = self._popen(child.command)
        child.started_at = time.monotonic()
        child.restart_at = None
        self._write_pidfile()
        log(f"started {child.name} again (pid {child.pgid})")

    # --- Stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every child and the private cluster; safe to call again, and uninterruptible."""
        if self.stopped:
            return
        self.stopped = True
        self.stop_requested = True
        if self.signal_count:
            self._note_signals()
        else:
            log("stopping everything")
        self._stop_groups(
            [(child.name, child.pgid, child.process) for child in reversed(self.children)]
        )
        self.children.clear()
        self._write_pidfile()
        if self.cluster is not None:
            self.cluster.stop()
        self._note_signals()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument(
        "--state-dir",
        default=str(BASE_DIR),
        help="where .pgdata/ and .local/ live (default: the project folder)",
    )
    parser.add_argument("--no-seed", action="store_true", help="skip seed_demo")
    parser.add_argument(
        "--demo-days",
        type=int,
        default=365,
        help="days of readings seed_demo loads for the demo accounts (default: a year)",
    )
    parser.add_argument("--reload", action="store_true", help="restart the server on code changes")
    parser.add_argument(
        "--stop-grace",
        type=float,
        default=STOP_GRACE,
        help=f"seconds each child gets to stop before it is killed (default {STOP_GRACE:.0f})",
    )
    args = parser.parse_args()

    launcher = Launcher(args)
    # Before anything starts: from here on, Ctrl-C, kill and a closed terminal all mean
    # "stop everything, in order", and no signal interrupts the launcher's own code.
    launcher.install_signal_handlers()
    code = 0
    try:
        launcher.start()
        code = launcher.wait()
    except StopRequested:
        pass
    except SetupError as error:
        log(f"cannot start: {error}")
        code = 1
    except subprocess.CalledProcessError as error:
        log(f"a setup step failed: {' '.join(map(str, error.cmd))} (status {error.returncode})")
        code = 1
    finally:
        launcher.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
