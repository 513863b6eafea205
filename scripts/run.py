"""`make run`: everything a developer needs, started in order and stopped with one Ctrl-C.

1. PostgreSQL: DATABASE_URL if set, else a private cluster inside the project (.pgdata/),
   reachable only through a Unix socket in that folder, so it never clashes with a server on
   port 5432.
2. Redis: REDIS_URL (default redis://127.0.0.1:6379/0) if it answers; then a Celery worker and
   beat run too. Otherwise tasks run inline (CELERY_TASK_ALWAYS_EAGER) and the cache is local.
3. migrate, seed_demo (prints the logins), then the web server on http://127.0.0.1:8000.

Children run in their own sessions so that Ctrl-C reaches only this launcher, which then stops
the server, the worker, beat and the private cluster in that order.
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
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from portal.lib.devcluster import DATABASE_NAME, cluster_database_url, cluster_paths  # noqa: E402

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def log(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; run them as the postgres system user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


class PrivateCluster:
    """A PostgreSQL 15 cluster in `base/.pgdata`, listening only on a Unix socket there."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data, self.socket_dir = cluster_paths(base)
        self.root = self.data.parent
        self.logfile = self.root / "postgresql.log"
        self.started_here = False

    @property
    def url(self) -> str:
        return cluster_database_url(self.base)

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
                    log(f"allowed the postgres user to traverse {path} (chmod o+x)")
                path = path.parent

    def _running(self) -> bool:
        result = subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"]),
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def start(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise SetupError(
                f"PostgreSQL 15 server binaries are not in {PG_BIN}: install postgresql-15, "
                "set PG_BIN, or set DATABASE_URL to use an existing server"
            )
        self._prepare_dirs()
        if not (self.data / "PG_VERSION").exists():
            log(f"creating a private PostgreSQL cluster in {self.data}")
            subprocess.run(
                _as_postgres(
                    [
                        str(PG_BIN / "initdb"),
                        "-D",
                        str(self.data),
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
        if self._running():
            # Left over from a launcher that was killed; it is ours, so stop it at the end too.
            log("private PostgreSQL cluster already running; using it")
            self.started_here = True
        else:
            options = (
                f"-k {self.socket_dir} -c listen_addresses='' -c max_connections=50 "
                "-c fsync=off -c synchronous_commit=off"
            )
            subprocess.run(
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
            self.started_here = True
            log(f"private PostgreSQL started (socket in {self.socket_dir})")
        exists = subprocess.run(
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
            subprocess.run(
                ["createdb", "-h", str(self.socket_dir), "-U", "postgres", DATABASE_NAME],
                check=True,
            )

    def stop(self) -> None:
        if not self.started_here:
            return
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]
            ),
            check=False,
            stdout=subprocess.DEVNULL,
        )
        log("private PostgreSQL stopped")


class SetupError(Exception):
    """A precondition of `make run` is missing; the message says what to do."""


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


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


class Launcher:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.cluster: PrivateCluster | None = None
        self.stopping = False
        self.env = dict(os.environ)
        self.env.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.local")
        self.python = sys.executable

    def manage(self, *arguments: str) -> None:
        subprocess.run(
            [self.python, str(BASE_DIR / "manage.py"), *arguments],
            env=self.env,
            check=True,
            cwd=BASE_DIR,
        )

    @property
    def pidfile(self) -> Path:
        return Path(self.args.state_dir) / ".local" / "run.pids"

    def reap_leftovers(self) -> None:
        """Stop the process groups a killed launcher left running (recorded in run.pids)."""
        if not self.pidfile.exists():
            return
        for line in self.pidfile.read_text().split():
            try:
                os.killpg(int(line), signal.SIGTERM)
                log(f"stopped process group {line} left by an earlier run")
            except (ValueError, ProcessLookupError, PermissionError):
                continue
        self.pidfile.unlink()

    def spawn(self, name: str, command: list[str]) -> None:
        # Each child leads its own process group, so that stopping it also stops whatever it
        # started (runserver's reloader, the worker's pool).
        process = subprocess.Popen(command, env=self.env, cwd=BASE_DIR, start_new_session=True)
        self.children.append((name, process))
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        with self.pidfile.open("a") as pids:
            pids.write(f"{process.pid}\n")
        log(f"started {name} (pid {process.pid})")

    def configure(self) -> None:
        if self.env.get("DATABASE_URL"):
            log("using DATABASE_URL from the environment")
        else:
            self.cluster = PrivateCluster(Path(self.args.state_dir))
            self.cluster.start()
            self.env["DATABASE_URL"] = self.cluster.url
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

    def start(self) -> None:
        self.reap_leftovers()
        self.configure()
        self.manage("migrate", "--no-input", "-v", "0")
        if not self.args.no_seed:
            self.manage("seed_demo", "--days", str(self.args.demo_days))
        state = Path(self.args.state_dir) / ".local"
        state.mkdir(exist_ok=True)
        if self.with_worker:
            celery = [self.python, "-m", "celery", "-A", "portal"]
            self.spawn(
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
            )
            self.spawn(
                "celery beat",
                [
                    *celery,
                    "beat",
                    "--loglevel",
                    "INFO",
                    "--schedule",
                    str(state / "celerybeat-schedule"),
                ],
            )
        runserver = [
            self.python,
            str(BASE_DIR / "manage.py"),
            "runserver",
            f"127.0.0.1:{self.args.port}",
        ]
        if not self.args.reload:
            runserver.append("--noreload")
        self.spawn("web server", runserver)
        log(f"serving on http://127.0.0.1:{self.args.port}/ - press Ctrl-C once to stop everything")

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        for name, process in reversed(self.children):
            log(f"stopping {name}")
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _name, process in self.children:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
            # Children of the group (a reloader's server) may outlive its leader briefly.
            _signal_group(process, signal.SIGKILL)
        if self.pidfile.exists():
            self.pidfile.unlink()
        if self.cluster is not None:
            self.cluster.stop()

    def wait(self) -> int:
        while True:
            for name, process in self.children:
                code = process.poll()
                if code is not None:
                    log(f"{name} exited with status {code}; stopping the rest")
                    return 1
            time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    args = parser.parse_args()

    launcher = Launcher(args)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Ctrl-C, kill and a closed terminal all mean: stop everything, in order.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    code = 0
    try:
        launcher.start()
        code = launcher.wait()
    except KeyboardInterrupt:
        log("shutting down")
    except SetupError as error:
        log(f"cannot start: {error}")
        code = 1
    except subprocess.CalledProcessError as error:
        log(f"a setup step failed: {' '.join(map(str, error.cmd))} (status {error.returncode})")
        code = 1
    finally:
        # A second signal must not cut the shutdown short.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        launcher.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
