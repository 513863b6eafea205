#!/usr/bin/env python3
"""`make bench`: the ingest, storage and chart-data rows of docs/QUALITY.md, every ratio between
figures measured in the same run.

Steps, in this order, on a database of its own (`smartmeter_bench` on 127.0.0.1:5432, or
BENCH_DATABASE_URL; created, migrated and dropped again unless --keep):

0. warm-up: a small CSV batch (4 readings per meter, `register_meters=True`) registers the M
   meters and their 15-minute main registers through a real Celery worker.
1. baseline: client-side `COPY ... FROM STDIN` of the N readings of step 2, fully derived
   (register_id, ts, start_ts, value, delta, quality, flags, batch_id), streamed from a file
   as the importer streams its CSV:
     - into a plain (logged) table with the columns of meters_reading and no index or key:
       the limit, and the denominator of every "x COPY" ratio;
     - into a table shaped exactly like meters_reading (range-partitioned by month, primary
       key, BRIN on ts, foreign key to meters_register): for information.
   The baseline is measured again before the last step; the faster of the two runs is used.
2. the product's import path: the same readings as a CSV file (meter_serial, timestamp,
   value in kWh, unit) → services.batch_create → a `celery worker --pool solo` subprocess runs
   meters.tasks.import_batch_task (COPY, validate, VEE, merge, rollups); time from just
   before batch_create to the batch's finished_at. Goal ≥ 0.15x COPY.
3. the same file again with reprocess=True: 0 new rows, all duplicates. Goal ≥ 0.3x COPY.
4. history: H months (default 12) of readings and rollups for the M meters are written with
   set-wise SQL before the warm-up's time range (plus VACUUM ANALYZE, as autovacuum would have
   done); then the next N-reading slice is imported like step 2. Goal ≥ 0.9x step 2's rate.
5. (--big-rows, default 5,000,000; 0 skips) a big file imported by the same worker after its
   peak-RSS counter was reset; its VmHWM (from /proc/<pid>/status) is the streaming memory
   figure. Goal < 300 MB.
6. storage, from the catalog after VACUUM: bytes per stored reading (day rows and side table
   with their indexes and TOAST; goal ≤ 15) and the whole database divided by its readings
   (goal ≤ 30). Measured before steps 7 and 8, which rewrite rollup rows.
7. rollup rebuild: meters.services.readings.rollups_rebuild of every service point over the
   local days of step 4's slice, timed, divided by the readings those days hold (counted with
   meters_readings_between); the rollups must still sum to the readings afterwards.
8. chart query: one account gets supplies (supply_start, from the history's start) at
   --chart-points (20) random service points; then --chart-samples (200) pairs of
   meters.selectors.consumption.consumption_series calls, each for one random supplied service
   point and one random whole local day of the loaded readings, at Resolution.QUARTER_HOUR and
   at Resolution.DAY (the daily-rollup lookup), after 10 untimed pairs, alternating which goes
   first; both must give the day's same consumption. p50/p95/p99 of each; goal: the 15-minute
   p95 ≤ 2x the rollup's.
9. projection to 1M and 10M meters (96 readings a meter a day, 365 days, linear): storage a
   year at step 6's whole-database bytes per reading (and the readings alone), import hours a
   day at step 4's rate (one worker, this machine) and rollup-rebuild hours a day at step 7's
   seconds per reading; the assumptions are printed with the table.

Readings are cumulative register values at 15-minute intervals, with a per-meter base rate
and a bounded wobble, so every interval has a plausible positive consumption and the VEE
rules pass them all; counts are checked and the run exits 1 if an import fails or a count is
wrong (re-import inserting anything, rollups not summing to the readings). Ratios below their
goal are reported as BELOW; a benchmark reports, it does not fail on them.

--profile adds, before step 5, one more N-reading slice imported inline in this process (no
worker) with every pipeline function and SQL statement timed (Django's execute_wrapper), and
prints where the time goes. --order time writes the CSVs interval by interval instead of meter
by meter. The history is written with the foreign-key triggers off (session_replication_role,
the rows are consistent by construction); its time is reported but is no import-path figure.

Redis database 1 is the broker and cache (the tests use 2-7 and 10-15); it is flushed before
and after the run. BENCH_REDIS_URL names another one, for a run beside someone else's (their
worker would take this run's tasks from the shared queue).

Output: the results table (every rate, ratio and figure with its goal and verdict), notes,
where each import's time went, the chart-query percentiles, the projection, and last the run's
wall time. --json PATH writes the same figures as JSON (machine, arguments, table rows, stage
timings, storage, rollup rebuild, chart percentiles, projection with its assumptions, the
profile if any, the git commit); the full run (no --rows: not `make bench QUICK=1`) writes
bench-results.json in the repository root (git-ignored) so that runs can be compared.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from unittest import mock

import psycopg
from psycopg import sql

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from benchkit import (  # noqa: E402 - after the path is set
    database_conninfo,
    database_name,
    describe_machine,
    machine_info,
    recreate_database,
    scratch_teardown,
    source_revision,
    verdict,
)

from portal.lib.periods import add_months, local_date, local_midnight  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smartmeter_bench"
# BENCH_REDIS_URL: another database for a run beside someone else's, whose worker would take
# this run's tasks from a shared queue (and whose flush would drop them).
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1")
QUARTER = dt.timedelta(minutes=15)
QUARTERS_PER_DAY = 96
WARMUP_QUARTERS = 4
COPY_CHUNK = 1 << 20
POLL_SECONDS = 0.05
# docs/QUALITY.md, ingest, storage and chart-data rows (issue 14).
GOAL_IMPORT = 0.15
GOAL_REIMPORT = 0.3
GOAL_HISTORY = 0.9
GOAL_RSS_MB = 300.0
GOAL_READING_BYTES = 15
GOAL_DATABASE_BYTES = 30
GOAL_CHART_P95 = 2.0
DEFAULT_ROWS = 1_000_000
# The full run's figures, for comparing runs (git-ignored).
DEFAULT_JSON = BASE_DIR / "bench-results.json"
PROJECTED_METERS = (1_000_000, 10_000_000)
DAYS_PER_YEAR = 365
CHART_WARMUP_CALLS = 10
CHART_SEED = 14

# The database's size, its readings (both layouts of migration 0013), what landed in a default
# partition, and the bytes of the readings' and the rollups' tables with their indexes and TOAST.
STORAGE_FIGURES = """
SELECT pg_database_size(current_database()),
       (SELECT count(*) FROM meters_readingside)
       + (SELECT coalesce(sum(cardinality(array_remove(quality, NULL))), 0)
          FROM meters_channelday),
       (SELECT count(*) FROM meters_readingside_default)
       + (SELECT count(*) FROM meters_channelday_default),
       (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('meters_channelday')
         WHERE isleaf)
       + (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('meters_readingside')
           WHERE isleaf),
       pg_total_relation_size('meters_hourlyday') + pg_total_relation_size('meters_rollupdaily')
"""


class BenchError(Exception):
    """An import failed or a count is wrong: the run exits 1."""


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# --- Synthetic readings ---------------------------------------------------------------------
# Quarter q of meter m is at origin + q x 15 min, with the register value (Wh)
#     value(m, q) = base(m) + q·rate(m) + wobble(m, q),   rate(m) ∈ [40, 89], wobble ∈ [0, 30],
# so each interval consumes between 10 and 119 Wh. The same closed form is used in SQL for the
# history, which is why it avoids anything but integer arithmetic on non-negative numbers.


def serial(meter: int) -> str:
    return f"B{meter:06d}"


def value(meter: int, quarter: int) -> int:
    return (
        1_000_000
        + meter * 1000
        + quarter * (40 + meter % 50)
        + (quarter * 7919 + meter * 104_729) % 31
    )


SQL_VALUE = (
    "(1000000 + {m} * 1000 + {q} * (40 + mod({m}, 50)) + mod({q} * 7919 + {m} * 104729, 31))"
)


def sql_value(meter: str, quarter: str) -> str:
    return SQL_VALUE.format(m=meter, q=quarter)


@dataclass(frozen=True)
class Timeline:
    """Where each step's readings lie: history | warm-up | A | B | C | big, back to back."""

    origin: dt.datetime
    history_quarters: int
    slice_quarters: int
    profile_quarters: int
    big_quarters: int

    def ts(self, quarter: int) -> dt.datetime:
        return self.origin + quarter * QUARTER

    @property
    def warmup(self) -> range:
        start = self.history_quarters
        return range(start, start + WARMUP_QUARTERS)

    @property
    def slice_a(self) -> range:
        start = self.warmup.stop
        return range(start, start + self.slice_quarters)

    @property
    def slice_b(self) -> range:
        start = self.slice_a.stop
        return range(start, start + self.slice_quarters)

    @property
    def slice_c(self) -> range:
        start = self.slice_b.stop
        return range(start, start + self.profile_quarters)

    @property
    def big(self) -> range:
        start = self.slice_c.stop
        return range(start, start + self.big_quarters)


def _add_months(day: dt.datetime, months: int) -> dt.datetime:
    """The UTC midnight starting the month `months` after a UTC moment's month."""
    return local_midnight(add_months(local_date(day, "UTC"), months), "UTC")


def plan_timeline(
    *, history_months: int, slice_quarters: int, profile_quarters: int, big_quarters: int
) -> Timeline:
    """Lay the steps out so that the last reading is at least a day in the past and the
    history starts on the first of a month (a whole number of days, in UTC)."""
    after = WARMUP_QUARTERS + 2 * slice_quarters + profile_quarters + big_quarters
    latest_warmup = dt.datetime.now(dt.UTC) - dt.timedelta(days=1) - after * QUARTER
    warmup_month = _add_months(latest_warmup, 0)
    origin = _add_months(warmup_month, -history_months)
    history = int((warmup_month - origin) / QUARTER)
    return Timeline(origin, history, slice_quarters, profile_quarters, big_quarters)


def _ts_strings(timeline: Timeline, quarters: range, pattern: str) -> list[str]:
    return [timeline.ts(q).strftime(pattern) for q in quarters]


def write_csv(
    path: Path, timeline: Timeline, meters: int, quarters: range, *, order: str, kind: bool
) -> int:
    """Write the product's CSV (documented columns), streaming; return the number of rows."""
    stamps = _ts_strings(timeline, quarters, "%Y-%m-%dT%H:%M:%SZ")
    suffix = ",kWh,electricity\n" if kind else ",kWh\n"
    rows = 0
    with path.open("w", encoding="ascii", buffering=COPY_CHUNK) as out:
        out.write("meter_serial,timestamp,value,unit" + (",kind" if kind else "") + "\n")

        def line(meter: int, index: int) -> str:
            v = value(meter, quarters[index])
            return f"{serial(meter)},{stamps[index]},{v // 1000}.{v % 1000:03d}{suffix}"

        if order == "meter":
            for meter in range(meters):
                out.write("".join(line(meter, i) for i in range(len(quarters))))
                rows += len(quarters)
        else:
            for i in range(len(quarters)):
                out.write("".join(line(meter, i) for meter in range(meters)))
                rows += meters
    return rows


def write_copy_text(
    path: Path, timeline: Timeline, registers: list[int], quarters: range, *, order: str
) -> int:
    """The same readings as step 2, fully derived, in COPY's text format (what the merge ends
    up writing: start_ts, delta, quality actual, no flags)."""
    stamps = _ts_strings(timeline, range(quarters.start - 1, quarters.stop), "%Y-%m-%d %H:%M:%S+00")
    rows = 0
    with path.open("w", encoding="ascii", buffering=COPY_CHUNK) as out:

        def line(meter: int, index: int) -> str:
            q = quarters[index]
            v = value(meter, q)
            return (
                f"{registers[meter]}\t{stamps[index + 1]}\t{stamps[index]}\t{v}\t"
                f"{v - value(meter, q - 1)}\t0\t0\t1\n"
            )

        if order == "meter":
            for meter in range(len(registers)):
                out.write("".join(line(meter, i) for i in range(len(quarters))))
                rows += len(quarters)
        else:
            for i in range(len(quarters)):
                out.write("".join(line(meter, i) for meter in range(len(registers))))
                rows += len(registers)
    return rows


# --- Environment: database, Redis, worker ---------------------------------------------------


def bench_environment(database_url: str, workdir: Path) -> dict[str, str]:
    """What the bench process, manage.py and the worker all run with: local settings without
    DEBUG (no query log), Redis database 1 for broker and cache, payloads in the work folder."""
    return {
        "DJANGO_SETTINGS_MODULE": "portal.settings.local",
        "DATABASE_URL": database_url,
        "DJANGO_DEBUG": "0",
        "REDIS_URL": REDIS_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "CACHE_REDIS_URL": REDIS_URL,
        "CACHE_KEY_PREFIX": "bench",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "PORTAL_MEDIA_ROOT": str(workdir / "media"),
        "PORTAL_IMPORT_INBOX": str(workdir / "inbox"),
        "LOG_LEVEL": "WARNING",
    }


def flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


class Worker:
    """`celery -A portal worker --pool solo` as a subprocess: the import runs in this pid."""

    def __init__(self, env: dict[str, str], logfile: Path) -> None:
        self.logfile = logfile
        self._log: IO[bytes] = logfile.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                "--pool",
                "solo",
                "-Q",
                "readings,default,notifications",
                "-n",
                f"bench-{os.getpid()}@%h",
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=BASE_DIR,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(
                f"the worker exited with {self.process.returncode}; its log:\n{self.tail()}"
            )

    def tail(self, lines: int = 30) -> str:
        text = self.logfile.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def memory_kb(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak resident set) of the worker, in kB."""
        figures: dict[str, int] = {}
        status = Path(f"/proc/{self.pid}/status").read_text(encoding="ascii")
        for line in status.splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                figures[name] = int(rest.split()[0])
        return figures

    def reset_peak(self) -> bool:
        """Reset the kernel's peak-RSS counter (VmHWM) of the worker; False if refused."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5", encoding="ascii")
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# --- Measurements ---------------------------------------------------------------------------


@dataclass
class CopyResult:
    label: str
    rows: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


@dataclass
class ImportResult:
    label: str
    rows: int
    seconds: float
    counts: dict[str, int]
    stages: list[tuple[str, float]] = field(default_factory=list)
    chunks: int = 0

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


READING_COLUMNS = """
    register_id bigint NOT NULL,
    ts timestamptz NOT NULL,
    start_ts timestamptz,
    value bigint,
    delta bigint,
    quality smallint NOT NULL DEFAULT 0,
    flags integer NOT NULL DEFAULT 0,
    batch_id bigint
"""


def _months(start: dt.datetime, stop: dt.datetime) -> list[dt.datetime]:
    month = _add_months(start, 0)
    months = []
    while month <= stop:
        months.append(month)
        month = _add_months(month, 1)
    return months


def baseline_copy(
    conninfo: str, path: Path, rows: int, timeline: Timeline, quarters: range
) -> tuple[CopyResult, CopyResult]:
    """COPY the readings into a plain table (the limit) and into one shaped like
    meters_reading; each table is created empty before and dropped after its measurement."""
    results = []
    with psycopg.connect(conninfo) as conn:
        for label, shaped in (
            ("raw COPY → plain table (limit)", False),
            ("raw COPY → table shaped like meters_reading", True),
        ):
            with conn.transaction():
                conn.execute("DROP TABLE IF EXISTS bench_copy")
                if shaped:
                    conn.execute(
                        "CREATE TABLE bench_copy ("
                        + READING_COLUMNS
                        + ", PRIMARY KEY (register_id, ts), FOREIGN KEY (register_id) "
                        "REFERENCES meters_register (id) ON DELETE RESTRICT, "
                        "CHECK (start_ts IS NULL OR start_ts < ts), "
                        "CHECK (quality BETWEEN 0 AND 4)) PARTITION BY RANGE (ts)"
                    )
                    conn.execute("CREATE INDEX ON bench_copy USING brin (ts)")
                    for month in _months(timeline.ts(quarters.start), timeline.ts(quarters[-1])):
                        conn.execute(
                            sql.SQL(
                                "CREATE TABLE {} PARTITION OF bench_copy "
                                "FOR VALUES FROM ({}) TO ({})"
                            ).format(
                                sql.Identifier(f"bench_copy_p{month:%Y%m}"),
                                sql.Literal(month),
                                sql.Literal(_add_months(month, 1)),
                            )
                        )
                    conn.execute("CREATE TABLE bench_copy_default PARTITION OF bench_copy DEFAULT")
                else:
                    conn.execute("CREATE TABLE bench_copy (" + READING_COLUMNS + ")")
            conn.execute("CHECKPOINT")
            conn.commit()
            start = time.perf_counter()
            with (
                conn.cursor() as cursor,
                path.open("rb") as stream,
                cursor.copy("COPY bench_copy FROM STDIN") as copy,
            ):
                while chunk := stream.read(COPY_CHUNK):
                    copy.write(chunk)
            conn.commit()
            seconds = time.perf_counter() - start
            (copied,) = conn.execute("SELECT count(*) FROM bench_copy").fetchone() or (0,)
            if copied != rows:
                raise BenchError(f"{label}: {copied} rows copied, {rows} expected")
            conn.execute("DROP TABLE bench_copy")
            conn.commit()
            results.append(CopyResult(label, rows, seconds))
            log(f"{label}: {rows:,} rows in {seconds:.2f} s = {rows / seconds:,.0f} rows/s")
    return results[0], results[1]


FINAL = ("done", "done_with_rejections", "rejected", "failed", "duplicate")


def _stage_name(status: str, stage: str) -> str:
    return "stored, queued" if status == "queued" else stage or status


def run_import(
    worker: Worker,
    path: Path,
    *,
    label: str,
    rows: int,
    register_meters: bool = False,
    reprocess: bool = False,
    timeout: float,
) -> ImportResult:
    """Create a batch as `manage.py import_readings` does and wait for the worker to finish
    it; the stages are timed by polling the batch's recorded stage and chunk progress."""
    from django.utils import timezone

    from meters.models import ImportBatch
    from meters.services.imports import batch_create
    from portal.audit.actors import SystemActor

    started_wall = timezone.now()
    started = started_wall.timestamp()
    with path.open("rb") as content:
        batch = batch_create(
            source=ImportBatch.Source.COMMAND,
            fmt=ImportBatch.Format.CSV,
            content=content,
            original_name=path.name,
            actor=SystemActor("command:bench"),
            register_meters=register_meters,
            reprocess=reprocess,
            as_of=started_wall,
        )
    # Wall-clock seconds since `started`, the clock the worker's finished_at is on too.
    transitions: list[tuple[float, str]] = [(0.0, "batch_create (store file, queue)")]
    transitions.append((time.time() - started, "stored, queued"))
    deadline = started + timeout
    while True:
        status, stage = ImportBatch.objects.filter(pk=batch.pk).values_list("status", "stage").get()
        now = time.time() - started
        name = _stage_name(status, stage)
        if name != transitions[-1][1] and status not in FINAL:
            transitions.append((now, name))
        if status in FINAL:
            break
        worker.check_alive()
        if time.time() > deadline:
            raise BenchError(f"{label}: batch still {status}/{stage} after {timeout:.0f} s")
        time.sleep(POLL_SECONDS)
    batch.refresh_from_db()
    if batch.status != ImportBatch.Status.DONE:
        raise BenchError(f"{label}: batch {batch.status}: {batch.error}")
    assert batch.finished_at is not None  # noqa: S101 - set with status done
    seconds = (batch.finished_at - started_wall).total_seconds()
    transitions = [(min(at, seconds), name) for at, name in transitions]
    transitions.append((seconds, "done"))
    stages = [
        (name, end - begin)
        for (begin, name), (end, _) in itertools.pairwise(transitions)
        if end > begin
    ]
    counts = {
        "seen": batch.seen,
        "inserted": batch.inserted,
        "duplicate": batch.duplicate,
        "conflicting": batch.conflicting,
        "rejected": batch.rejected,
        "estimated": batch.estimated,
    }
    result = ImportResult(label, rows, seconds, counts, stages, batch.chunks_total)
    log(
        f"{label}: {rows:,} rows in {seconds:.2f} s = {result.rate:,.0f} rows/s  "
        + " ".join(f"{k}={v:,}" for k, v in counts.items())
    )
    log(
        "    "
        + ", ".join(f"{name} {secs:.2f} s" for name, secs in stages)
        + f" ({batch.chunks_total} chunks)"
    )
    return result


def expect(result: ImportResult, **wanted: int) -> None:
    wrong = {k: (result.counts[k], v) for k, v in wanted.items() if result.counts[k] != v}
    if wrong:
        detail = ", ".join(f"{k} = {got:,}, expected {want:,}" for k, (got, want) in wrong.items())
        raise BenchError(f"{result.label}: {detail}")


def register_ids(meters: int) -> list[int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.serial, r.id FROM meters_meter m "
            "JOIN meters_register r ON r.meter_id = m.id AND r.is_main"
        )
        found = dict(cursor.fetchall())
    missing = [serial(m) for m in range(meters) if serial(m) not in found]
    if missing:
        raise BenchError(f"the warm-up did not register {len(missing)} meters, e.g. {missing[0]}")
    return [found[serial(m)] for m in range(meters)]


def check_rollups(timeline: Timeline, label: str) -> None:
    """The rollups of the imported range sum to the readings' consumption (no suspect ones)."""
    from django.db import connection

    start = timeline.ts(timeline.warmup.start)
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH e AS (SELECT * FROM meters_readings_between("
            "    ARRAY(SELECT id FROM meters_register), %(t)s, 'infinity')) "
            "SELECT (SELECT coalesce(sum(delta), 0) FROM e WHERE quality <> 4), "
            "(SELECT coalesce(sum(consumption), 0) "
            " FROM meters_hourly(%(t)s - interval '1 hour', 'infinity')), "
            "(SELECT coalesce(sum(consumption), 0) FROM meters_rollupdaily "
            " WHERE day >= (%(t)s - interval '1 day')::date), "
            "(SELECT count(*) FROM e WHERE quality = 4), "
            "(SELECT count(*) FROM meters_readingside_default) "
            "+ (SELECT count(*) FROM meters_channelday_default)",
            {"t": start},
        )
        readings, hourly, daily, suspect, stray = cursor.fetchone()
    if not readings == hourly == daily:
        raise BenchError(
            f"after {label}: readings sum {readings}, hourly rollups {hourly}, daily {daily}"
        )
    if suspect or stray:
        raise BenchError(f"after {label}: {suspect} suspect readings, {stray} in the default part")


def fill_history(timeline: Timeline, meters: int) -> tuple[int, float]:
    """Write the history (readings and hourly/daily rollups) before the warm-up, set-wise."""
    from django.db import connection, transaction

    quarters = timeline.history_quarters
    if quarters == 0:
        return 0, 0.0
    started = time.perf_counter()
    months = _months(timeline.origin, timeline.ts(quarters - 1))
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_regs AS "
            "SELECT substr(m.serial, 2)::integer AS m, r.id AS reg, mi.service_point_id AS sp "
            "FROM meters_meter m JOIN meters_register r ON r.meter_id = m.id AND r.is_main "
            "JOIN meters_meterinstallation mi ON mi.meter_id = m.id ORDER BY r.id"
        )
        # The meters were installed before their history.
        cursor.execute(
            "UPDATE meters_meterinstallation SET installed_at = %s",
            [timeline.origin - dt.timedelta(seconds=1)],
        )
        for parent in ("public.meters_readingside", "public.meters_channelday"):
            cursor.execute(
                "SELECT partman.create_partition_time(%s, %s::timestamptz[])", [parent, months]
            )
        # The rows are consistent by construction: skip the per-row foreign-key triggers
        # (superuser only; the session setting is reset below).
        cursor.execute("SET session_replication_role = replica")
        for month in months:
            lo = max(0, int((month - timeline.origin) / QUARTER))
            hi = min(quarters, int((_add_months(month, 1) - timeline.origin) / QUARTER))
            # Day rows as the importer writes them (migration 0013): slot i of a UTC day is
            # quarter q = (day - origin) / 15 min + i - 1; the month's quarters [lo, hi) only.
            slot_q = "(extract(epoch FROM d - %(o)s)::bigint / 900 + i - 1)"
            inside = f"{slot_q} BETWEEN %(lo)s AND %(hi)s - 1"
            v_slot = sql_value("b.m", slot_q)
            v_before = sql_value("b.m", f"({slot_q} - 1)")
            with transaction.atomic():
                cursor.execute(
                    "INSERT INTO meters_channelday (register_id, day, service_point_id, "  # noqa: S608
                    "interval_s, vals, deltas, quality, flags, spans) "
                    "SELECT b.reg, d::date, b.sp, 900, "
                    f"array_agg(CASE WHEN {inside} THEN {v_slot} END ORDER BY i), "
                    f"array_agg(CASE WHEN {inside} AND {slot_q} > 0 "
                    f"THEN {v_slot} - {v_before} END ORDER BY i), "
                    f"array_agg(CASE WHEN {inside} THEN 0::smallint END ORDER BY i), "
                    f"array_agg(CASE WHEN {inside} THEN 0 END ORDER BY i), "
                    f"array_agg(CASE WHEN {inside} THEN 900 END ORDER BY i) "
                    # register by register, in key order: the index grows at its right edge
                    "FROM bench_regs b, "
                    "generate_series(%(o)s + %(lo)s * interval '15 minutes', "
                    "%(o)s + (%(hi)s - 1) * interval '15 minutes', interval '1 day') d, "
                    "generate_series(1, 96) i "
                    "GROUP BY b.reg, b.m, b.sp, d ORDER BY b.reg, d",
                    {"o": timeline.origin, "lo": lo, "hi": hi},
                )
            log(
                f"    history {month:%Y-%m}: {(hi - lo) * meters:,} readings "
                f"({time.perf_counter() - started:.0f} s)"
            )
        hours = quarters // 4 - 1  # the last hour holds the warm-up's first reading
        # Hour k (from the origin, a UTC midnight) is slot k mod 24 + 1 of UTC day k div 24's
        # row (meters migration 0014); hours from `hours` on stay empty.
        present = "x.k < %(n)s"
        cursor.execute(
            "INSERT INTO meters_hourlyday (service_point_id, direction, day, account_id, "  # noqa: S608
            "consumption, estimated, suspect_count, reading_count) "
            "SELECT b.sp, 'import', (%(o)s + d * interval '1 day')::date, NULL, "
            f"array_agg(CASE WHEN {present} THEN {sql_value('b.m', '(4 * x.k + 4)')} "
            f"- {sql_value('b.m', '(4 * x.k)')} END ORDER BY i), "
            f"array_agg(CASE WHEN {present} THEN 0 END ORDER BY i), "
            f"array_agg(CASE WHEN {present} THEN 0 END ORDER BY i), "
            f"array_agg(CASE WHEN {present} THEN 4 END ORDER BY i) "
            "FROM bench_regs b, generate_series(0, (%(n)s - 1) / 24) d, "
            "generate_series(1, 24) i, LATERAL (SELECT d * 24 + i - 1 AS k) x "
            "GROUP BY b.sp, b.m, d",
            {"o": timeline.origin, "n": hours},
        )
        days = quarters // QUARTERS_PER_DAY - 1
        cursor.execute(
            "INSERT INTO meters_rollupdaily (service_point_id, direction, day, account_id, "  # noqa: S608
            "consumption, estimated, suspect_count, reading_count, hours) "
            f"SELECT b.sp, 'import', (%(o)s + k * interval '1 day')::date, NULL, "
            f"{sql_value('b.m', '(96 * k + 96)')} - {sql_value('b.m', '(96 * k)')}, "
            "0, 0, 96, 24 FROM bench_regs b CROSS JOIN generate_series(0, %(n)s) k",
            {"o": timeline.origin, "n": days - 1},
        )
        cursor.execute("RESET session_replication_role")
        cursor.execute("DROP TABLE bench_regs")
        log(f"    history rollups written ({time.perf_counter() - started:.0f} s)")
        cursor.execute(
            "VACUUM (ANALYZE) meters_channelday, meters_readingside, meters_hourlyday, "
            "meters_rollupdaily, "
            "meters_register, meters_meter, meters_meterinstallation"
        )
    return quarters * meters, time.perf_counter() - started


# --- Rollup rebuild and the chart query ----------------------------------------------------


@dataclass(frozen=True)
class RollupFigure:
    """A rollups_rebuild of every service point over the local days of a slice."""

    service_points: int
    first_day: dt.date
    last_day: dt.date
    readings: int
    seconds: float
    transactions: int

    @property
    def seconds_per_reading(self) -> float:
        return self.seconds / self.readings

    def as_json(self) -> dict[str, Any]:
        return {
            "service_points": self.service_points,
            "first_day": self.first_day.isoformat(),
            "last_day": self.last_day.isoformat(),
            "readings": self.readings,
            "seconds": self.seconds,
            "transactions": self.transactions,
            "seconds_per_reading": self.seconds_per_reading,
        }


def _zone_of_points() -> str:
    """The service points' one time zone (the warm-up registers them all alike)."""
    from meters.models import ServicePoint

    zones = set(ServicePoint.objects.values_list("time_zone", flat=True).distinct())
    if len(zones) != 1:
        raise BenchError(f"the bench's service points are in {len(zones)} time zones, not one")
    return zones.pop()


def measure_rollup_rebuild(timeline: Timeline, quarters: range) -> RollupFigure:
    """Time meters.services.readings.rollups_rebuild over the local days of `quarters` for
    every service point (each meter has one), and count the readings those days hold: the
    rebuild recomputes whole days, whichever slice their readings came in."""
    from django.db import connection

    from meters.models import ServicePoint
    from meters.services.readings import rollups_rebuild
    from portal.audit.actors import SystemActor

    zone = _zone_of_points()
    first_day = local_date(timeline.ts(quarters.start), zone)
    last_day = local_date(timeline.ts(quarters[-1]), zone)
    points = list(ServicePoint.objects.order_by("pk").values_list("pk", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM meters_servicepoint sp "
            "JOIN meters_meterinstallation mi ON mi.service_point_id = sp.id "
            "JOIN meters_register r ON r.meter_id = mi.meter_id "
            "CROSS JOIN LATERAL meters_readings_between(ARRAY[r.id], "
            "    %(first)s::date::timestamp AT TIME ZONE sp.time_zone, "
            "    (%(last)s::date + 1)::timestamp AT TIME ZONE sp.time_zone) e "
            "WHERE sp.id = ANY(%(ids)s)",
            {"first": first_day, "last": last_day, "ids": points},
        )
        (readings,) = cursor.fetchone()
    started = time.perf_counter()
    result = rollups_rebuild(
        actor=SystemActor("command:bench"),
        service_point_ids=points,
        first_day=first_day,
        last_day=last_day,
    )
    seconds = time.perf_counter() - started
    if not readings:
        raise BenchError(f"rollup rebuild: no readings on {first_day}..{last_day}")
    figure = RollupFigure(len(points), first_day, last_day, readings, seconds, result.transactions)
    log(
        f"rollup rebuild: {len(points):,} service points x {first_day}..{last_day} "
        f"({readings:,} readings) in {seconds:.2f} s, {result.transactions} transactions"
    )
    return figure


@dataclass(frozen=True)
class ChartFigure:
    """consumption_series for one service point and one local day, at 15 minutes (the day
    rows' readings) and by day (the daily rollup), timed call by call in this process."""

    service_points: int
    first_day: dt.date
    last_day: dt.date
    supply_seconds: float
    quarter_ms: list[float]
    day_ms: list[float]

    @property
    def ratio(self) -> float:
        return percentiles(self.quarter_ms)["p95"] / percentiles(self.day_ms)["p95"]

    def as_json(self) -> dict[str, Any]:
        return {
            "samples": len(self.quarter_ms),
            "service_points": self.service_points,
            "first_day": self.first_day.isoformat(),
            "last_day": self.last_day.isoformat(),
            "supply_seconds": self.supply_seconds,
            "quarter_hour_ms": percentiles(self.quarter_ms),
            "day_rollup_ms": percentiles(self.day_ms),
            "p95_ratio": self.ratio,
            "goal": f"≤ {GOAL_CHART_P95:g}x",
            "verdict": "PASS" if self.ratio <= GOAL_CHART_P95 else "ABOVE",
        }


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "max": max(values)}


def measure_chart(
    timeline: Timeline, last_quarter: int, *, samples: int, points: int
) -> ChartFigure:
    """Give one account supplies (supply_start, from the history's start) at `points` random
    service points, then time `samples` pairs of consumption_series calls, each pair for one
    random supplied service point and one random whole local day of the loaded readings: the
    15-minute series and the day's rollup. Each pair must agree on the day's consumption."""
    from django.db import connection

    from meters.models import ServicePoint
    from meters.periods import Resolution
    from meters.selectors.consumption import consumption_series
    from meters.services.supply import supply_start
    from portal.audit.actors import SystemActor
    from portal.tenancy.services.accounts import account_create

    rng = random.Random(CHART_SEED)  # noqa: S311 - a reproducible sample, no secret
    zone = _zone_of_points()
    everything = list(ServicePoint.objects.order_by("pk"))
    chosen = rng.sample(everything, min(points, len(everything)))
    actor = SystemActor("command:bench")
    started = time.perf_counter()
    account = account_create(
        name="Bench chart account",
        payment_mode="postpaid",
        currency="TWD",
        time_zone=zone,
        actor=actor,
    )
    for point in chosen:
        supply_start(account=account, service_point=point, start=timeline.origin, actor=actor)
    supply_seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) meters_hourlyday, meters_rollupdaily, meters_supply")
    # Whole local days only: the first and the last day of the readings may be partial.
    first_day = local_date(timeline.origin, zone) + dt.timedelta(days=1)
    last_day = local_date(timeline.ts(last_quarter), zone) - dt.timedelta(days=1)
    if last_day < first_day:
        raise BenchError(f"chart query: no whole day of readings ({first_day}..{last_day})")
    span = (last_day - first_day).days

    def pair(point: ServicePoint, day: dt.date, quarter_first: bool) -> tuple[float, float]:
        start = local_midnight(day, point.time_zone)
        end = local_midnight(day + dt.timedelta(days=1), point.time_zone)
        timed: dict[Resolution, tuple[float, int]] = {}
        order = [Resolution.QUARTER_HOUR, Resolution.DAY]
        for resolution in order if quarter_first else order[::-1]:
            began = time.perf_counter()
            series = consumption_series(
                account_id=account.pk,
                service_point_id=point.pk,
                start=start,
                end=end,
                resolution=resolution,
                time_zone=point.time_zone,
            )
            elapsed = (time.perf_counter() - began) * 1000
            timed[resolution] = (elapsed, sum(p.consumption for p in series))
        quarter, day_total = timed[Resolution.QUARTER_HOUR], timed[Resolution.DAY]
        if quarter[1] != day_total[1] or not quarter[1]:
            raise BenchError(
                f"chart query: {point.code} on {day}: 15-minute series sums to {quarter[1]}, "
                f"the daily rollup to {day_total[1]}"
            )
        return quarter[0], day_total[0]

    quarter_ms: list[float] = []
    day_ms: list[float] = []
    for number in range(CHART_WARMUP_CALLS + samples):
        point = rng.choice(chosen)
        day = first_day + dt.timedelta(days=rng.randint(0, span))
        # Alternate which call goes first, so neither always meets a warmer cache.
        quarter, daily = pair(point, day, quarter_first=number % 2 == 0)
        if number >= CHART_WARMUP_CALLS:
            quarter_ms.append(quarter)
            day_ms.append(daily)
    figure = ChartFigure(len(chosen), first_day, last_day, supply_seconds, quarter_ms, day_ms)
    log(
        f"chart query: {samples} pairs over {len(chosen)} service points, days "
        f"{first_day}..{last_day}: p95 {percentiles(quarter_ms)['p95']:.2f} ms at 15 minutes, "
        f"{percentiles(day_ms)['p95']:.2f} ms by day ({figure.ratio:.2f}x)"
    )
    return figure


def print_chart(figure: ChartFigure) -> None:
    print()
    print(
        f"15-minute chart query against the daily-rollup lookup: consumption_series for one "
        f"service point and one local day, {len(figure.quarter_ms)} calls of each "
        f"(after {CHART_WARMUP_CALLS} untimed), random among {figure.service_points} supplied "
        f"service points and the days {figure.first_day}..{figure.last_day}:"
    )
    print(f"  {'resolution':<32} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, values in (
        ("15 minutes (day rows, 96 points)", figure.quarter_ms),
        ("day (meters_rollupdaily)", figure.day_ms),
    ):
        cut = percentiles(values)
        print(
            f"  {label:<32} {cut['p50']:8.2f} {cut['p95']:8.2f} {cut['p99']:8.2f} {cut['max']:8.2f}"
        )
    p50 = percentiles(figure.quarter_ms)["p50"] / percentiles(figure.day_ms)["p50"]
    print(
        f"  p95 ratio {figure.ratio:.2f}x (goal ≤ {GOAL_CHART_P95:g}x: "
        f"{'PASS' if figure.ratio <= GOAL_CHART_P95 else 'ABOVE'}); p50 ratio {p50:.2f}x"
    )


# --- Profiling (optional): the same pipeline run inline, every SQL statement timed ----------


@dataclass
class Profile:
    totals: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)

    def add(self, key: str, seconds: float) -> None:
        self.totals[key] = self.totals.get(key, 0.0) + seconds
        self.calls[key] = self.calls.get(key, 0) + 1


def _statement_label(text: str) -> str:
    words = re.sub(r"\s+", " ", re.sub(r"--[^\n]*", "", text)).strip()
    return words[:88]


def profile_import(path: Path, rows: int) -> tuple[ImportResult, Profile]:
    """Import `path` in this process (no worker) with every pipeline function and every SQL
    statement timed; the COPY itself shows as the function's time outside its statements."""
    from django.db import connection
    from django.utils import timezone

    from meters.ingest import pipeline
    from meters.ingest.formats import csv as csv_format
    from meters.models import ImportBatch
    from meters.services import imports as import_services
    from portal.audit.actors import SystemActor

    profile = Profile()

    def timed(module: Any, name: str) -> Any:
        original = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            profile.stack.append(name)
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                profile.add(f"{name} (whole function)", time.perf_counter() - began)
                profile.stack.pop()

        return mock.patch.object(module, name, wrapper)

    def statement_timer(
        execute: Callable[..., Any], text: str, params: Any, many: bool, context: Any
    ) -> Any:
        began = time.perf_counter()
        try:
            return execute(text, params, many, context)
        finally:
            where = profile.stack[-1] if profile.stack else "-"
            profile.add(f"{where}: {_statement_label(text)}", time.perf_counter() - began)

    class NoQueue:
        @staticmethod
        def delay(**kwargs: Any) -> None:
            return None

    actor = SystemActor("command:bench")
    started_wall = timezone.now()
    started = time.perf_counter()
    with mock.patch("meters.tasks.import_batch_task", NoQueue), path.open("rb") as content:
        batch = import_services.batch_create(
            source=ImportBatch.Source.COMMAND,
            fmt=ImportBatch.Format.CSV,
            content=content,
            original_name=path.name,
            actor=actor,
            as_of=started_wall,
        )
    patches = [
        timed(pipeline, "stage_payload"),
        timed(csv_format, "copy_csv"),
        timed(csv_format, "stage_csv"),
        timed(pipeline, "resolve"),
        timed(pipeline, "chunk_plan"),
        timed(pipeline, "merge_chunk"),
        timed(pipeline, "refresh_rollups"),
        timed(pipeline, "finish"),
    ]
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        stack.enter_context(connection.execute_wrapper(statement_timer))
        pipeline.run(batch_id=batch.pk, actor=actor, as_of=timezone.now())
    seconds = time.perf_counter() - started
    batch.refresh_from_db()
    if batch.status != ImportBatch.Status.DONE:
        raise BenchError(f"profiled import: batch {batch.status}: {batch.error}")
    counts = {"seen": batch.seen, "inserted": batch.inserted, "duplicate": batch.duplicate}
    result = ImportResult("profiled import (inline, no worker)", rows, seconds, counts)
    return result, profile


def print_profile(result: ImportResult, profile: Profile) -> None:
    print()
    print(
        f"Profile: {result.rows:,} rows inline in {result.seconds:.2f} s "
        f"({result.rate:,.0f} rows/s); seconds per function and per SQL statement:"
    )
    for key, seconds in sorted(profile.totals.items(), key=lambda item: -item[1]):
        if seconds < 0.05 * result.seconds / 20:
            continue
        print(f"  {seconds:8.2f} s  {profile.calls[key]:4d}x  {key}")


# --- Report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the results table, printed and written to the JSON alike: a rate row
    (rows, seconds, rows/s, a ratio) or a figure row (bytes, MB) with no time of its own."""

    label: str
    rows: int
    seconds: float | None = None
    figure: float | None = None
    unit: str = "x"
    goal: str = ""
    verdict: str = ""

    @property
    def rate(self) -> float | None:
        return self.rows / self.seconds if self.seconds else None

    def cells(self) -> tuple[str, ...]:
        if self.figure is None:
            shown = ""
        elif self.unit == "x":
            shown = f"{self.figure:.2f}x"
        elif self.unit == "MB":
            shown = f"{self.figure:.0f} MB"
        else:
            shown = f"{self.figure:.1f} {self.unit}"
        return (
            self.label,
            f"{self.rows:,}",
            "" if self.seconds is None else f"{self.seconds:.2f}",
            "" if self.rate is None else f"{self.rate:,.0f}",
            shown,
            self.goal,
            self.verdict,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "rows": self.rows,
            "seconds": self.seconds,
            "rows_per_s": self.rate,
            "ratio": self.figure,
            "unit": self.unit,
            "goal": self.goal,
            "verdict": self.verdict,
        }


def print_table(rows: list[Row]) -> None:
    header = ("step", "rows", "seconds", "rows/s", "ratio", "goal", "")
    cells = [row.cells() for row in rows]
    widths = [max(len(str(r[i])) for r in [header, *cells]) for i in range(len(header))]
    aligns = ["<", ">", ">", ">", ">", "<", "<"]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(
            f"{cell:{align}{width}}" for cell, align, width in zip(row, aligns, widths, strict=True)
        ).rstrip()

    print(fmt(header))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(fmt(row))


def _si_bytes(size: float) -> str:
    """Decimal units, as storage is sold: 1 TB = 10^12 bytes."""
    for unit, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size:,.0f} B"


@dataclass(frozen=True)
class Projection:
    """What `meters` meters read every 15 minutes would need, scaled from this run."""

    meters: int
    readings_per_day: int
    database_bytes_per_year: float
    reading_bytes_per_year: float
    import_hours_per_day: float
    rollup_hours_per_day: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "meters": self.meters,
            "readings_per_day": self.readings_per_day,
            "database_bytes_per_year": self.database_bytes_per_year,
            "reading_bytes_per_year": self.reading_bytes_per_year,
            "import_hours_per_day": self.import_hours_per_day,
            "rollup_hours_per_day": self.rollup_hours_per_day,
        }


def project(
    *,
    database_bytes: float,
    reading_bytes: float,
    import_rate: float,
    rollup_seconds_per_reading: float | None,
) -> list[Projection]:
    """Linear scaling: bytes and seconds per reading as measured, times the readings of a day
    (and of a year for storage)."""
    projections = []
    for meters in PROJECTED_METERS:
        per_day = meters * QUARTERS_PER_DAY
        projections.append(
            Projection(
                meters=meters,
                readings_per_day=per_day,
                database_bytes_per_year=database_bytes * per_day * DAYS_PER_YEAR,
                reading_bytes_per_year=reading_bytes * per_day * DAYS_PER_YEAR,
                import_hours_per_day=per_day / import_rate / 3600,
                rollup_hours_per_day=(
                    None
                    if rollup_seconds_per_reading is None
                    else rollup_seconds_per_reading * per_day / 3600
                ),
            )
        )
    return projections


def print_projections(projections: list[Projection], assumptions: list[str]) -> None:
    header = (
        "meters",
        "readings/day",
        "storage/year",
        "readings alone/year",
        "import h/day",
        "rollup rebuild h/day",
    )
    rows = [
        (
            f"{p.meters:,}",
            f"{p.readings_per_day:,}",
            _si_bytes(p.database_bytes_per_year),
            _si_bytes(p.reading_bytes_per_year),
            f"{p.import_hours_per_day:,.1f}",
            "-" if p.rollup_hours_per_day is None else f"{p.rollup_hours_per_day:,.1f}",
        )
        for p in projections
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print()
    print("Projection to 1M and 10M meters (15-minute reads), scaled from this run:")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  " + "  ".join(f"{c:>{w}}" for c, w in zip(row, widths, strict=True)))
    print("  assumptions:")
    for line in assumptions:
        print(f"    - {line}")


# --- Main -----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help=f"readings per slice (default {DEFAULT_ROWS:,}: the full run, which writes the JSON)",
    )
    parser.add_argument("--meters", type=int, default=1000, help="meters (15-min registers)")
    parser.add_argument(
        "--history-months", type=int, default=12, help="history loaded before step 4"
    )
    parser.add_argument(
        "--big-rows", type=int, default=5_000_000, help="rows of the last, memory step (0: skip)"
    )
    parser.add_argument(
        "--order",
        choices=("meter", "time"),
        default="meter",
        help="CSV row order: each meter's readings together, or interval by interval",
    )
    parser.add_argument(
        "--chart-samples", type=int, default=200, help="timed chart-query calls per resolution"
    )
    parser.add_argument(
        "--chart-points", type=int, default=20, help="service points given a supply for them"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"also write every figure as JSON here (the full run: {DEFAULT_JSON.name})",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also import a slice inline, timing every statement"
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="per import, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the database and files")
    args = parser.parse_args()
    if args.rows is None:
        args.rows = DEFAULT_ROWS
        args.json = args.json or DEFAULT_JSON
    if args.meters < 1 or args.rows < args.meters:
        parser.error("--rows must be at least --meters")
    if args.chart_samples < 2 or args.chart_points < 1:
        parser.error("--chart-samples must be at least 2 and --chart-points at least 1")
    return args


@dataclass
class Storage:
    """The catalog's sizes after VACUUM, at the end of the run."""

    database_bytes: int
    readings: int
    stray: int
    reading_bytes: int
    rollup_bytes: int

    def as_json(self) -> dict[str, Any]:
        return {
            "database_bytes": self.database_bytes,
            "readings": self.readings,
            "readings_in_default_partitions": self.stray,
            "reading_bytes": self.reading_bytes,
            "rollup_bytes": self.rollup_bytes,
            "bytes_per_stored_reading": self.reading_bytes / self.readings,
            "rollup_bytes_per_reading": self.rollup_bytes / self.readings,
            "database_bytes_per_reading": self.database_bytes / self.readings,
        }


def measure_storage() -> Storage:
    from django.db import connection

    with connection.cursor() as cursor:
        # Sizes from the catalog after VACUUM, as autovacuum would leave them.
        cursor.execute(
            "VACUUM (ANALYZE) meters_channelday, meters_readingside, "
            "meters_hourlyday, meters_rollupdaily"
        )
        cursor.execute(STORAGE_FIGURES)
        size, total, stray, readings_bytes, rollup_bytes = cursor.fetchone()
    # sum() over bigint sizes comes back as numeric (Decimal): whole bytes, as int.
    return Storage(
        int(size), int(total), int(stray), int(readings_bytes or 0), int(rollup_bytes or 0)
    )


@dataclass
class Report:
    """Everything the run prints, kept as data so that the JSON holds the same figures."""

    info: dict[str, Any]
    args: argparse.Namespace
    meters: int
    per_meter: int
    started_at: dt.datetime
    table: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    imports: list[ImportResult] = field(default_factory=list)
    storage: Storage | None = None
    rollup: RollupFigure | None = None
    chart: ChartFigure | None = None
    projections: list[Projection] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    profiled: tuple[ImportResult, Profile] | None = None
    error: str | None = None

    @property
    def rows(self) -> int:
        return self.meters * self.per_meter

    def print(self) -> None:
        print()
        print("Ingest benchmark (docs/QUALITY.md): ratios against raw COPY measured in this run")
        for line in describe_machine(self.info):
            print(f"  {line}")
        print(
            f"  scale: {self.meters:,} meters, {self.rows:,} readings per slice "
            f"({self.per_meter:,} quarter-hours each = "
            f"{self.per_meter / QUARTERS_PER_DAY:.1f} days), CSV ordered by {self.args.order}, "
            f"{self.args.history_months} months of history before step 4"
        )
        print()
        if self.table:
            print_table(self.table)
        for note in self.notes:
            print(f"  {note}")
        if self.imports:
            print()
            print(
                "Where the time goes (polled from the batch's recorded stage and chunk progress):"
            )
            for result in self.imports:
                parts = ", ".join(
                    f"{name} {secs:.1f} s ({100 * secs / result.seconds:.0f}%)"
                    for name, secs in result.stages
                )
                print(f"  {result.label} [{result.chunks} chunks]: {parts}")
        if self.chart is not None:
            print_chart(self.chart)
        if self.projections:
            print_projections(self.projections, self.assumptions)
        if self.profiled is not None:
            print_profile(*self.profiled)

    def as_json(self, wall_seconds: float) -> dict[str, Any]:
        return {
            "benchmark": "scripts/bench.py",
            "started_at": self.started_at.isoformat(),
            "wall_seconds": wall_seconds,
            "ok": self.error is None,
            "error": self.error,
            "source": source_revision(),
            "machine": self.info,
            "arguments": {
                "rows": self.args.rows,
                "meters": self.args.meters,
                "history_months": self.args.history_months,
                "big_rows": self.args.big_rows,
                "order": self.args.order,
                "chart_samples": self.args.chart_samples,
                "chart_points": self.args.chart_points,
                "profile": self.args.profile,
            },
            "scale": {
                "meters": self.meters,
                "readings_per_slice": self.rows,
                "quarter_hours_per_slice": self.per_meter,
            },
            "table": [row.as_json() for row in self.table],
            "notes": self.notes,
            "stages": [
                {
                    "label": result.label,
                    "rows": result.rows,
                    "seconds": result.seconds,
                    "rows_per_s": result.rate,
                    "chunks": result.chunks,
                    "counts": result.counts,
                    "stages": [{"stage": name, "seconds": secs} for name, secs in result.stages],
                }
                for result in self.imports
            ],
            "storage": None if self.storage is None else self.storage.as_json(),
            "rollup_rebuild": None if self.rollup is None else self.rollup.as_json(),
            "chart_query": None if self.chart is None else self.chart.as_json(),
            "projections": {
                "assumptions": self.assumptions,
                "rows": [p.as_json() for p in self.projections],
            },
            "profile": (
                None
                if self.profiled is None
                else {
                    "rows": self.profiled[0].rows,
                    "seconds": self.profiled[0].seconds,
                    "seconds_by_step": self.profiled[1].totals,
                    "calls_by_step": self.profiled[1].calls,
                }
            ),
        }


def add_projections(report: Report, history_import: ImportResult) -> None:
    """Scale the run's storage, import and rollup figures to 1M and 10M meters."""
    storage = report.storage
    if storage is None or not storage.readings:
        report.notes.append("projection skipped: no storage figures")
        return
    database_bytes = storage.database_bytes / storage.readings
    reading_bytes = storage.reading_bytes / storage.readings
    rollup = report.rollup
    report.projections = project(
        database_bytes=database_bytes,
        reading_bytes=reading_bytes,
        import_rate=history_import.rate,
        rollup_seconds_per_reading=None if rollup is None else rollup.seconds_per_reading,
    )
    report.assumptions = [
        f"every meter has one register read every 15 minutes: {QUARTERS_PER_DAY} readings a "
        f"day, {DAYS_PER_YEAR} days a year; everything scales linearly with readings",
        f"storage/year: the whole database divided by its readings at the end of this run, "
        f"{database_bytes:.1f} B a reading ({storage.readings:,} readings: readings, indexes, "
        f"rollups, catalog and every other table; fixed overhead weighs more in a small run); "
        f"'readings alone' is the day rows and side table with their indexes, "
        f"{reading_bytes:.1f} B; no replicas, backups or WAL archive",
        f"import h/day: the day's readings at this run's '{history_import.label}' rate, "
        f"{history_import.rate:,.0f} rows/s: one Celery worker (--pool solo) on this "
        f"{report.info['cores']}-core machine, sharing it with PostgreSQL; above 24 h one "
        f"worker cannot keep up (the import keeps rollups current itself: that time is in it)",
    ]
    if rollup is not None:
        report.assumptions.append(
            f"rollup rebuild h/day: meters.services.readings.rollups_rebuild of the "
            f"{rollup.service_points:,} service points over {rollup.first_day}.."
            f"{rollup.last_day} ({rollup.readings:,} readings) took {rollup.seconds:.2f} s, "
            f"{rollup.seconds_per_reading * 1e6:.1f} µs a reading, one process: the cost of "
            f"recomputing a day's hourly and daily rollups from its readings"
        )
    else:
        report.assumptions.append("rollup rebuild not measured")


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> int:  # noqa: PLR0915 - one linear script, step by step
    run_started = time.perf_counter()
    args = parse_args()
    database_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    database_name(database_url)
    workdir = Path(tempfile.mkdtemp(prefix="smartmeter-bench-"))
    env = bench_environment(database_url, workdir)
    os.environ.update(env)
    conninfo = database_conninfo(database_url)
    meters = args.meters
    per_meter = args.rows // meters
    rows = per_meter * meters
    big_per_meter = -(-args.big_rows // meters) if args.big_rows else 0
    timeline = plan_timeline(
        history_months=args.history_months,
        slice_quarters=per_meter,
        profile_quarters=per_meter if args.profile else 0,
        big_quarters=big_per_meter,
    )
    worker: Worker | None = None
    recreate_database(database_url)
    report = Report(machine_info(conninfo), args, meters, per_meter, dt.datetime.now(dt.UTC))
    table, notes, imports = report.table, report.notes, report.imports
    for line in describe_machine(report.info):
        log(line)
    log(
        f"scale: {meters:,} meters x {per_meter:,} quarter-hours = {rows:,} readings per slice"
        f" ({per_meter / QUARTERS_PER_DAY:.1f} days), CSV rows ordered by {args.order}; "
        f"history {args.history_months} months; big step {big_per_meter * meters:,} rows"
    )
    try:
        log(f"database {database_name(database_url)}: migrating")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v", "0"],
            cwd=BASE_DIR,
            env={**os.environ, **env},
            check=True,
        )
        import django

        django.setup()
        flush_redis()
        worker = Worker(env, workdir / "worker.log")
        log(f"worker pid {worker.pid} (celery --pool solo, broker {REDIS_URL})")

        warmup_csv = workdir / "warmup.csv"
        write_csv(warmup_csv, timeline, meters, timeline.warmup, order=args.order, kind=True)
        warm = run_import(
            worker,
            warmup_csv,
            label="warm-up (register meters)",
            rows=meters * WARMUP_QUARTERS,
            register_meters=True,
            timeout=args.timeout,
        )
        expect(warm, inserted=meters * WARMUP_QUARTERS, rejected=0)
        registers = register_ids(meters)

        log("writing the files")
        slice_a = workdir / "slice_a.csv"
        slice_b = workdir / "slice_b.csv"
        copy_a = workdir / "slice_a.copy"
        write_csv(slice_a, timeline, meters, timeline.slice_a, order=args.order, kind=False)
        write_csv(slice_b, timeline, meters, timeline.slice_b, order=args.order, kind=False)
        write_copy_text(copy_a, timeline, registers, timeline.slice_a, order=args.order)

        plain, shaped = baseline_copy(conninfo, copy_a, rows, timeline, timeline.slice_a)

        # Step 2: the real import path, empty table.
        first = run_import(
            worker,
            slice_a,
            label="import via Celery (empty table)",
            rows=rows,
            timeout=args.timeout,
        )
        expect(first, seen=rows, inserted=rows, duplicate=0, conflicting=0, rejected=0)
        imports.append(first)
        check_rollups(timeline, "step 2")

        # Step 3: the same file again.
        again = run_import(
            worker,
            slice_a,
            label="re-import same file (reprocess)",
            rows=rows,
            reprocess=True,
            timeout=args.timeout,
        )
        expect(again, seen=rows, inserted=0, duplicate=rows, conflicting=0, rejected=0)
        imports.append(again)

        # Step 4: history, then the next slice.
        log(f"filling {args.history_months} months of history")
        history_rows, history_seconds = fill_history(timeline, meters)
        if history_rows:
            notes.append(
                f"history: {history_rows:,} readings ({args.history_months} months x "
                f"{meters:,} meters) + hourly/daily rollups written set-wise in "
                f"{history_seconds:.0f} s (not an import-path figure)"
            )
            log(notes[-1])
        later = run_import(
            worker,
            slice_b,
            label=f"import with {args.history_months} months loaded",
            rows=rows,
            timeout=args.timeout,
        )
        expect(later, seen=rows, inserted=rows, duplicate=0, conflicting=0, rejected=0)
        imports.append(later)
        check_rollups(timeline, "step 4")

        if args.profile:
            slice_c = workdir / "slice_c.csv"
            write_csv(slice_c, timeline, meters, timeline.slice_c, order=args.order, kind=False)
            report.profiled = profile_import(slice_c, rows)
            expect(report.profiled[0], inserted=rows)

        # The baseline again, before the last step: the faster run is the denominator.
        plain2, shaped2 = baseline_copy(conninfo, copy_a, rows, timeline, timeline.slice_a)
        copy_rate = max(plain.rate, plain2.rate)
        shaped_rate = max(shaped.rate, shaped2.rate)
        notes.append(
            f"raw COPY runs: plain {plain.rate:,.0f} and {plain2.rate:,.0f} rows/s, shaped "
            f"{shaped.rate:,.0f} and {shaped2.rate:,.0f} rows/s (the faster is used)"
        )

        def row(result: CopyResult | ImportResult, ratio: float, goal: str, mark: str) -> None:
            table.append(Row(result.label, result.rows, result.seconds, ratio, "x", goal, mark))

        best_plain = plain if plain.rate >= plain2.rate else plain2
        best_shaped = shaped if shaped.rate >= shaped2.rate else shaped2
        row(best_plain, 1.0, "baseline", "")
        row(best_shaped, shaped_rate / copy_rate, "(info)", "")
        row(
            first,
            first.rate / copy_rate,
            f"≥ {GOAL_IMPORT}x COPY",
            verdict(first.rate / copy_rate, GOAL_IMPORT),
        )
        row(
            again,
            again.rate / copy_rate,
            f"≥ {GOAL_REIMPORT}x COPY",
            verdict(again.rate / copy_rate, GOAL_REIMPORT),
        )
        row(
            later,
            later.rate / first.rate,
            f"≥ {GOAL_HISTORY}x empty",
            verdict(later.rate / first.rate, GOAL_HISTORY),
        )
        if report.profiled:
            row(report.profiled[0], report.profiled[0].rate / copy_rate, "(info)", "")

        # Step 5: streaming memory, last of the imports.
        last_quarter = timeline.slice_c.stop - 1
        if big_per_meter:
            big_csv = workdir / "big.csv"
            big_rows = write_csv(
                big_csv, timeline, meters, timeline.big, order=args.order, kind=False
            )
            before = worker.memory_kb()
            reset = worker.reset_peak()
            idle = worker.memory_kb()
            big = run_import(
                worker, big_csv, label="big file via Celery", rows=big_rows, timeout=args.timeout
            )
            expect(big, seen=big_rows, inserted=big_rows, duplicate=0, rejected=0)
            imports.append(big)
            last_quarter = timeline.big.stop - 1
            after = worker.memory_kb()
            peak_mb = after["VmHWM"] / 1024
            row(big, big.rate / copy_rate, "(info)", "")
            table.append(
                Row(
                    "worker peak RSS (VmHWM) during the big import",
                    big_rows,
                    figure=peak_mb,
                    unit="MB",
                    goal=f"< {GOAL_RSS_MB:.0f} MB",
                    verdict="PASS" if peak_mb < GOAL_RSS_MB else "ABOVE",
                )
            )
            notes.append(
                f"worker memory: VmHWM {before['VmHWM'] / 1024:.0f} MB after steps 0-4 "
                f"(VmRSS {before['VmRSS'] / 1024:.0f} MB); peak counter reset: "
                f"{'yes' if reset else 'NO (figure includes earlier steps)'}; "
                f"VmRSS {idle['VmRSS'] / 1024:.0f} MB before and "
                f"{after['VmRSS'] / 1024:.0f} MB after the big import, "
                f"VmHWM {peak_mb:.0f} MB"
            )
        else:
            notes.append("big step skipped (--big-rows 0)")

        # Storage first: the rebuild and the supplies below rewrite rollup rows.
        storage = report.storage = measure_storage()
        total = storage.readings
        notes.append(
            f"at the end: {total:,} readings, {storage.stray} in the default partitions "
            f"(the importer created the monthly ones), "
            f"database {storage.database_bytes / 2**20:,.0f} MB"
        )
        if total:
            per_reading = storage.reading_bytes / total
            per_database = storage.database_bytes / total
            table.append(
                Row(
                    "bytes per stored reading (tables + indexes)",
                    total,
                    figure=per_reading,
                    unit="B",
                    goal=f"≤ {GOAL_READING_BYTES} B",
                    verdict="PASS" if per_reading <= GOAL_READING_BYTES else "ABOVE",
                )
            )
            table.append(
                Row(
                    "bytes per reading, whole database",
                    total,
                    figure=per_database,
                    unit="B",
                    goal=f"≤ {GOAL_DATABASE_BYTES} B",
                    verdict="PASS" if per_database <= GOAL_DATABASE_BYTES else "ABOVE",
                )
            )
            notes.append(
                f"storage: readings {storage.reading_bytes / 2**20:,.0f} MB "
                f"({per_reading:.1f} B each), rollups {storage.rollup_bytes / 2**20:,.0f} MB "
                f"({storage.rollup_bytes / total:.1f} B a reading)"
            )

        # Rollup rebuild of step 4's slice, then the chart query on the loaded days.
        report.rollup = measure_rollup_rebuild(timeline, timeline.slice_b)
        check_rollups(timeline, "the rollup rebuild")
        table.append(
            Row(
                "rollup rebuild of step 4's days (readings)",
                report.rollup.readings,
                report.rollup.seconds,
                goal="(info)",
            )
        )
        chart = report.chart = measure_chart(
            timeline, last_quarter, samples=args.chart_samples, points=args.chart_points
        )
        table.append(
            Row(
                "chart query p95: 15 minutes / daily rollup",
                len(chart.quarter_ms),
                figure=chart.ratio,
                goal=f"≤ {GOAL_CHART_P95:g}x rollup",
                verdict="PASS" if chart.ratio <= GOAL_CHART_P95 else "ABOVE",
            )
        )
        notes.append(
            f"chart query: one account's supplies at {chart.service_points} service points "
            f"from the history's start made in {chart.supply_seconds:.1f} s (supply_start "
            f"re-attributes their rollups)"
        )
        add_projections(report, later)
    except BenchError as error:
        report.error = str(error)
        print(f"\n[bench] FAILED: {error}", flush=True)
    finally:
        if worker is not None:
            worker.stop()
        scratch_teardown(
            database_url=database_url, workdir=workdir, keep=args.keep, tidy=flush_redis, say=log
        )

    report.print()
    wall = time.perf_counter() - run_started
    print()
    if args.json is not None:
        write_json(args.json, report.as_json(wall))
        print(f"Figures written as JSON to {args.json}")
    print(f"Wall time of the whole run: {wall:,.0f} s ({wall / 60:.1f} min)")
    return 1 if report.error else 0


if __name__ == "__main__":
    sys.exit(main())
