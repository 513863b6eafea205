"""What every scenario shares: the processes, their settings, and the ways to look at the result.

The verifier itself is a Django process like any other: it sends files and webhooks through
the same services the web server and the command use, against the verify cluster and Redis.
It is configured in `World.start()`, before Django is imported anywhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from verify.processes import (
    ROOT,
    Cluster,
    RedisServer,
    WebServer,
    Worker,
    become_subreaper,
    say,
)

STATE = ROOT / ".verify"
ALL_QUEUES = "default,notifications,readings,billing"


class World:
    def __init__(self, *, scale: int, fast: bool = False) -> None:
        self.scale = scale
        # The fast subset (`make test`): scenarios that are not about scale shrink by it.
        self.fast = fast
        self.cluster = Cluster(STATE)
        self.redis = RedisServer(STATE / "redis")
        self.workers: list[Worker] = []
        self.servers: list[WebServer] = []
        self.logs = STATE / "logs"
        self.env: dict[str, str] = {}
        self.worker_count = 0
        # Figures a later scenario compares with (a clean import's checksums, say).
        self.memo: dict[str, object] = {}

    # --- Lifetime --------------------------------------------------------------------------

    def start(self) -> None:
        become_subreaper()
        STATE.mkdir(exist_ok=True)
        (STATE / ".gitignore").write_text("*\n")
        self.logs.mkdir(exist_ok=True)
        # A new cluster every run: nothing a killed earlier run left behind can leak in.
        if self.cluster.exists and self.cluster.postmaster_pid() is not None:
            with contextlib.suppress(RuntimeError):
                self.cluster.crash()
        if self.cluster.root.exists():
            shutil.rmtree(self.cluster.root)
        say(f"starting a PostgreSQL cluster of its own in {self.cluster.data}")
        self.cluster.start()
        say(f"starting a Redis of its own on port {self.redis.port}")
        self.redis.start()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings.local",
            "DATABASE_URL": self.cluster.url,
            "REDIS_URL": self.redis.url,
            "CELERY_BROKER_URL": self.redis.url,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "PORTAL_MEDIA_ROOT": str(STATE / "media"),
            "PORTAL_IMPORT_INBOX": str(STATE / "inbox"),
            # Small chunks, so that a crash can land between two of them; a short backoff,
            # so that a retried attempt starts while the scenario watches.
            "PORTAL_IMPORT_CHUNK_ROWS": str(max(2_000, self.scale // 16)),
            "PORTAL_IMPORT_RETRY_BACKOFF": "1,1,1",
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update(self.env)
        say("migrating it (once; each scenario starts from a copy)")
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "migrate", "--no-input", "-v", "0"],
            cwd=ROOT,
            env=self.env,
            check=True,
        )
        self.cluster.save_template()
        import logging

        import django

        django.setup()
        # The sweeper runs in this process too; its task lines would drown the scenario's own.
        logging.getLogger("celery").setLevel(logging.WARNING)

    def stop(self) -> None:
        self.stop_workers()
        self.redis.stop()
        self.cluster.stop()

    def fresh(self) -> None:
        """An empty, migrated database, an empty broker and no worker: a scenario's start."""
        self.stop_workers()
        self.close_connections()
        self.cluster.reset()
        if not self.redis.answers():
            self.redis.start()
        self.redis.flush()

    # --- Workers ---------------------------------------------------------------------------

    def worker(self, *, queues: str = ALL_QUEUES) -> Worker:
        self.worker_count += 1
        worker = Worker(self.env, self.logs / f"worker-{self.worker_count}.log", queues=queues)
        self.workers.append(worker)
        return worker

    def web(self, *, workers: int = 2) -> WebServer:
        """The portal served by gunicorn (stopped with the workers at the scenario's end)."""
        server = WebServer(
            self.env, self.logs / f"web-{len(self.servers) + 1}.log", workers=workers
        )
        self.servers.append(server)
        return server

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()
        for server in self.servers:
            server.stop()
        self.servers.clear()

    # --- The database ----------------------------------------------------------------------

    def close_connections(self) -> None:
        close_connections()

    def crash_database(self) -> None:
        self.cluster.crash()
        self.close_connections()

    def restart_database(self) -> None:
        self.cluster.restart()
        self.close_connections()

    def scalar(self, statement: str, params: list[str | int] | None = None) -> object:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(statement, params or [])
            row = cursor.fetchone()
        return row[0] if row else None

    def row(self, statement: str, params: list[str | int] | None = None) -> tuple[object, ...]:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(statement, params or [])
            row = cursor.fetchone()
        return tuple(row) if row else ()


def close_connections() -> None:
    """Forget the connections to a database that crashed; the next query opens a new one."""
    from django.db import connections

    for conn in connections.all():
        with contextlib.suppress(Exception):
            conn.close()


def wait_for(
    condition: Callable[[], bool], *, what: str, timeout: float = 300, every: float = 0.02
) -> None:
    """Poll until `condition` holds. Database errors count as 'not yet' (it may be restarting)."""
    from django.db import DatabaseError

    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except DatabaseError:
            close_connections()
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@contextlib.contextmanager
def running(world: World, *, queues: str = ALL_QUEUES) -> Iterator[Worker]:
    worker = world.worker(queues=queues)
    try:
        yield worker
    finally:
        worker.stop()


def path_for(name: str) -> Path:
    path = STATE / "files" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
