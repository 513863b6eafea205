"""Running a batch through its stages (ImportBatch.Stage), resumably: `run` is the one entry.

    parsing     the file is COPYed into the staging tables            (one transaction)
    validating  units, meters and registers resolved; bad rows         (one transaction)
                rejected; structural problems fail the whole batch
    merging     chunks of registers validated (VEE) and merged, each   (one transaction each)
                with its rollups and the checkpoint
    finishing   events and meter status, staging dropped               (one transaction)

The stage and the number of merged chunks are saved with each step, so a batch whose worker
died continues where it stopped. A session advisory lock per batch keeps two workers (a
redelivered task and the sweeper's) from running the same batch at once. `run` also owns the
attempts: the retry after an unexpected error, the failure, and the audit entry of the batch's end.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from psycopg import sql

from meters.ingest import sql as q
from meters.ingest import staging
from meters.ingest.formats import chirpstack, dsmr, espi, jsonbulk
from meters.ingest.staging import BatchError, ParsedItem
from meters.ingest.units import MAX_SOURCE_MAGNITUDE, unit_rows
from meters.models import ImportBatch, ImportRowError, MeterEvent
from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.timezones import available_time_zones, default_time_zone

logger = logging.getLogger(__name__)

# Default physical maxima (base units per hour) for meters registered by an import.
DEFAULT_MAX_RATE = {"electricity": 250_000, "heat": 250_000, "water": 10_000, "gas": 20_000}
DEFAULT_STUCK_HOURS = {"electricity": 24, "heat": 24, "water": 72, "gas": 72}
EVENT_SEVERITY = {
    "tamper_magnetic": MeterEvent.Severity.SERIOUS,
    "tamper_tilt": MeterEvent.Severity.SERIOUS,
    "tamper_cover": MeterEvent.Severity.SERIOUS,
    "leak": MeterEvent.Severity.SERIOUS,
    "burst": MeterEvent.Severity.SERIOUS,
    "backflow": MeterEvent.Severity.WARNING,
    "valve_open": MeterEvent.Severity.INFO,
    "valve_closed": MeterEvent.Severity.WARNING,
    "battery_low": MeterEvent.Severity.WARNING,
    "power_outage": MeterEvent.Severity.WARNING,
    "communication_lost": MeterEvent.Severity.WARNING,
    "night_flow": MeterEvent.Severity.SERIOUS,
}
BATTERY_LOW_PERCENT = 20
# The longest spacing of rows taken for a register's reporting interval (seconds).
MAX_GUESSED_INTERVAL = 86_400

Parser = Callable[[BinaryIO, ImportBatch], Iterator[ParsedItem]]


class BatchBusy(Exception):
    """Another worker holds the batch; this run does nothing."""


def _exec(statement: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        text = statement if isinstance(statement, str) else statement.as_string(cursor.connection)
        cursor.execute(text, params)
        return list(cursor.fetchall()) if cursor.description else []


@contextmanager
def batch_lock(batch_id: int) -> Iterator[None]:
    """Hold the batch's session advisory lock for the block.

    :raises BatchBusy: if another session holds it.
    """
    (got,) = _exec("SELECT pg_try_advisory_lock(%s)", [q.BATCH_LOCK + batch_id])[0]
    if not got:
        raise BatchBusy
    try:
        yield
    finally:
        _exec("SELECT pg_advisory_unlock(%s)", [q.BATCH_LOCK + batch_id])


def batch_is_locked(batch_id: int) -> bool:
    """True while some worker is running the batch (its session still holds the lock)."""
    (got,) = _exec("SELECT pg_try_advisory_lock(%s)", [q.BATCH_LOCK + batch_id])[0]
    if got:
        _exec("SELECT pg_advisory_unlock(%s)", [q.BATCH_LOCK + batch_id])
    return not got


def _set_wise_session() -> None:
    """Settings for the pipeline's transaction: big sorts and hashes stay in memory, and no
    JIT (temp tables have rough estimates, and compiling each statement costs more than it
    saves; `make bench` shows the difference)."""
    _exec("SET LOCAL jit = off; SET LOCAL work_mem = '64MB'")


def _save(batch: ImportBatch, *fields: str) -> None:
    batch.save(update_fields=list(fields))


# --- the stage machine ------------------------------------------------------------------

PARSERS: dict[str, Parser | None] = {
    ImportBatch.Format.CSV: None,  # straight into COPY
    ImportBatch.Format.DSMR: dsmr.parse,
    ImportBatch.Format.ESPI: espi.parse,
    ImportBatch.Format.CHIRPSTACK: chirpstack.parse,
    ImportBatch.Format.JSON: jsonbulk.parse,
}


def run(*, batch_id: int, actor: Actor, as_of: dt.datetime) -> ImportBatch | None:
    """Run (or resume) a batch to its end; None if another worker is running it.

    Every batch ends, within PORTAL_IMPORT_MAX_ATTEMPTS attempts: a file-level problem fails it
    at once with its message; any other error rolls back the stage it happened in (the
    checkpoints of the stages before it stay), is recorded, and the batch waits for the
    sweeper to start its next attempt after PORTAL_IMPORT_RETRY_BACKOFF. The last attempt's
    error fails the batch, with the exception's class. A worker killed mid-batch has used up
    its attempt too: the sweeper re-queues the batch, and it fails here when none is left.
    """
    try:
        with batch_lock(batch_id):
            batch = ImportBatch.objects.get(pk=batch_id)
            if batch.finished:
                return batch
            max_attempts = settings.PORTAL_IMPORT_MAX_ATTEMPTS
            if batch.attempts >= max_attempts:
                # Started that many times and never recorded an end: each worker died in it.
                _batch_fail(
                    batch,
                    actor=actor,
                    message=(
                        f"The import was started {batch.attempts} times and never finished: "
                        "the worker running it stopped each time."
                    ),
                    error_class="WorkerLost",
                )
                return batch
            batch.status = ImportBatch.Status.RUNNING
            batch.attempts += 1
            batch.next_attempt_at = None
            batch.started_at = batch.started_at or as_of
            batch.stage = batch.stage or ImportBatch.Stage.PARSING
            batch.save(
                update_fields=["status", "attempts", "next_attempt_at", "started_at", "stage"]
            )
            try:
                _run_stages(batch, actor=actor, as_of=as_of)
            except BatchError as error:
                _batch_fail(batch, actor=actor, message=str(error))
            except Exception as error:
                logger.exception(
                    "import batch %s: attempt %s of %s failed: %s: %s",
                    batch.pk,
                    batch.attempts,
                    max_attempts,
                    _error_class(error),
                    error,
                )
                _batch_retry_or_fail(batch, actor=actor, error=error, max_attempts=max_attempts)
            return batch
    except BatchBusy:
        return None


def _error_class(error: BaseException) -> str:
    """The dotted class of what went wrong: the driver's error under Django's wrapper
    (psycopg.errors.NumericValueOutOfRange rather than django.db.utils.DataError)."""
    cause = error.__cause__
    if isinstance(error, DatabaseError) and cause is not None:
        error = cause
    kind = type(error)
    module = "" if kind.__module__ == "builtins" else kind.__module__ + "."
    return module + kind.__qualname__


def _batch_retry_or_fail(
    batch: ImportBatch, *, actor: Actor, error: Exception, max_attempts: int
) -> None:
    """Record an unexpected error: the batch waits for its next attempt, or, after the last,
    fails. If even that cannot be written (the database went away), the error propagates
    and the sweeper finds the batch running with a free lock later."""
    error_class = _error_class(error)
    message = str(error).strip() or error_class
    # The stage's transaction rolled back; the object may hold counts it never saved.
    batch.refresh_from_db()
    if batch.attempts >= max_attempts:
        _batch_fail(
            batch,
            actor=actor,
            message=(
                f"The import stopped on an unexpected error in each of its {batch.attempts} "
                f"attempts; the last one ({error_class}): {message}"
            ),
            error_class=error_class,
        )
        return
    backoff = settings.PORTAL_IMPORT_RETRY_BACKOFF or (0,)
    wait = backoff[min(batch.attempts, len(backoff)) - 1]
    batch.status = ImportBatch.Status.QUEUED
    batch.next_attempt_at = timezone.now() + dt.timedelta(seconds=wait)
    batch.error = _printable(message)
    batch.error_class = error_class[:200]
    batch.save(update_fields=["status", "next_attempt_at", "error", "error_class"])


def _printable(message: str) -> str:
    return "".join(c if c.isprintable() or c == "\n" else "?" for c in message[:5000])


def _batch_fail(batch: ImportBatch, *, actor: Actor, message: str, error_class: str = "") -> None:
    with transaction.atomic():
        fail(batch, message, as_of=timezone.now(), error_class=error_class)
        audit_record(
            actor=actor,
            event=AuditEvent.IMPORT_BATCH_FAILED,
            organisation=batch.organisation,
            target=batch,
            data={
                "batch": str(batch.public_id),
                "error": message[:500],
                "error_class": error_class,
                "attempts": batch.attempts,
            },
        )


def _run_stages(batch: ImportBatch, *, actor: Actor, as_of: dt.datetime) -> None:
    resumed = (ImportBatch.Stage.VALIDATING, ImportBatch.Stage.MERGING, ImportBatch.Stage.FINISHING)
    if batch.stage in resumed and staging_lost(batch):
        restart_from_the_file(batch)
    if batch.stage == ImportBatch.Stage.PARSING:
        stage_payload(batch, PARSERS[batch.format])
    if batch.stage == ImportBatch.Stage.VALIDATING:
        subtree = None
        if batch.organisation_id is not None:
            from portal.tenancy.selectors import organisation_subtree_ids

            assert batch.organisation is not None  # noqa: S101 - organisation_id is set
            subtree = organisation_subtree_ids(organisation=batch.organisation)
        resolve(batch, subtree=subtree)
    if batch.stage == ImportBatch.Stage.MERGING:
        plan = chunk_plan(batch)
        for registers in plan[batch.chunks_done :]:
            merge_chunk(batch, registers)
        check_accounted(batch)
        batch.stage = ImportBatch.Stage.FINISHING
        batch.save(update_fields=["stage"])
    if batch.stage == ImportBatch.Stage.FINISHING:
        with transaction.atomic():
            new_events = finish(batch, as_of=timezone.now())
            audit_record(
                actor=actor,
                event=AuditEvent.IMPORT_BATCH_FINISHED,
                organisation=batch.organisation,
                target=batch,
                data={
                    "batch": str(batch.public_id),
                    "status": batch.status,
                    **batch.counts,
                    "events": new_events,
                },
            )
            if new_events:
                from meters.tasks import meter_events_notify_task

                transaction.on_commit(meter_events_notify_task.delay)


# --- parsing --------------------------------------------------------------------------------


def stage_payload(batch: ImportBatch, parser: Parser | None) -> None:
    """Parse the payload into the staging tables (CSV goes straight to COPY)."""
    from meters.ingest.formats import csv as csv_format

    with transaction.atomic():
        staging.create_tables(batch.pk)
        errors: list[staging.RowError] = []
        error_count = rejected_rows = 0
        with Path(batch.payload_path).open("rb") as stream:
            if parser is None:
                csv_format.copy_csv(batch.pk, stream)
                csv_format.stage_csv(batch.pk)
            else:
                result = staging.write_items(batch.pk, parser(stream, batch))
                errors, error_count = result.errors, result.error_count
                rejected_rows = result.rejected_rows
        # Statistics before anything joins it: without them the planner takes a million-row
        # staging table for a few dozen rows and loops over it once per register.
        _exec(sql.SQL("ANALYZE {}").format(staging.stage_table(batch.pk)))
        (rows,) = _exec(sql.SQL("SELECT count(*) FROM {}").format(staging.stage_table(batch.pk)))[0]
        (events,) = _exec(sql.SQL("SELECT count(*) FROM {}").format(staging.event_table(batch.pk)))[
            0
        ]
        ImportRowError.objects.bulk_create(
            ImportRowError(batch=batch, line=error.line, code=error.code, params=error.params)
            for error in errors
        )
        batch.seen = rows + rejected_rows
        batch.rejected = rejected_rows
        batch.row_error_count = error_count
        batch.staged = rows
        batch.staged_events = events
        batch.stage = ImportBatch.Stage.VALIDATING
        batch.progress = 10
        # read_time_source: set by the DSMR parser when telegrams took the batch's time.
        _save(
            batch,
            "seen",
            "rejected",
            "row_error_count",
            "staged",
            "staged_events",
            "stage",
            "progress",
            "read_time_source",
        )


def staging_lost(batch: ImportBatch) -> bool:
    """True if the staging tables no longer hold what the parse put there (gone, or emptied by
    a crash): the stages after the parse must then not run on them."""
    stage, events = f"meters_stage_{batch.pk}", f"meters_stagev_{batch.pk}"
    found = _exec("SELECT to_regclass(%s), to_regclass(%s)", [stage, events])[0]
    if None in found:
        return True
    rows, staged_events = _exec(
        sql.SQL("SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM {})").format(
            staging.stage_table(batch.pk), staging.event_table(batch.pk)
        )
    )[0]
    return bool(rows != batch.staged or staged_events != batch.staged_events)


def restart_from_the_file(batch: ImportBatch) -> None:
    """Start a batch again from its stored payload, forgetting its counts and row errors.

    Chunks merged before are merged again and count as duplicates: the readings are stored
    once either way (INSERT ... ON CONFLICT), and nothing is counted twice.
    """
    logger.warning("batch %s: staging lost after %s; parsing the file again", batch.pk, batch.stage)
    with transaction.atomic():
        staging.drop_tables(batch.pk)
        ImportRowError.objects.filter(batch=batch).delete()
        for name in (
            "seen",
            "inserted",
            "duplicate",
            "conflicting",
            "rejected",
            "estimated",
            "row_error_count",
            "staged",
            "staged_events",
            "chunks_total",
            "chunks_done",
            "progress",
        ):
            setattr(batch, name, 0)
        batch.stage = ImportBatch.Stage.PARSING
        batch.save()


class RowsUnaccounted(Exception):
    """The end of a batch counted rows that the stages do not account for."""


def check_accounted(batch: ImportBatch) -> None:
    """Rows in equal rows accounted for: every row read was inserted, found already stored,
    kept apart as a conflict, or rejected. Estimates made for gaps are extra rows.

    :raises RowsUnaccounted: otherwise; the batch is then retried and, if it persists, failed,
        never reported done on a partial import.
    """
    accounted = (
        batch.inserted - batch.estimated + batch.duplicate + batch.conflicting + batch.rejected
    )
    if accounted != batch.seen or batch.chunks_done != batch.chunks_total:
        raise RowsUnaccounted(
            f"{batch.seen} rows read, {accounted} accounted for (inserted "
            f"{batch.inserted - batch.estimated}, duplicate {batch.duplicate}, conflicting "
            f"{batch.conflicting}, rejected {batch.rejected}); chunks {batch.chunks_done} of "
            f"{batch.chunks_total}"
        )


# --- validating -----------------------------------------------------------------------------


def _units_param() -> dict[str, Any]:
    rows = unit_rows()
    return {
        "symbols": [row[0] for row in rows],
        "bases": [row[1] for row in rows],
        "factors": [row[2] for row in rows],
    }


_UNITS = (
    "unnest(%(symbols)s::text[], %(bases)s::text[], %(factors)s::numeric[]) "
    "AS u(symbol, base, factor)"
)


def _fail_if_any(statement: sql.Composable, params: dict[str, Any], message: str) -> None:
    rows = _exec(sql.SQL("{} LIMIT 5").format(statement), params)
    if rows:
        listed = "; ".join(f"line {line}: {text}" for line, text in rows)
        raise BatchError(f"{message} Nothing was imported. {listed}")


# A bigint's range, which a value in base units (after unit and multiplier) must fit.
_BIGINT_MAX = 2**63 - 1
# Text a spreadsheet would run as a formula (CSV injection: = + - @, and tab or CR before them),
# or control characters, which no serial or register code has.
_UNSAFE_TEXT = r"^[=+@\t\r-]|[[:cntrl:]]"
_TIMESTAMP = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


# A staging row and its key in m_keys (serial, DevEUI, register code, unit; each may be NULL) as
# equalities a hash join can use.
_SAME_KEY = (
    "coalesce(s.serial, '') = coalesce(k.serial, '') "
    "AND (s.serial IS NULL) = (k.serial IS NULL) "
    "AND coalesce(s.dev_eui, '') = coalesce(k.dev_eui, '') "
    "AND (s.dev_eui IS NULL) = (k.dev_eui IS NULL) "
    "AND coalesce(s.register_code, '') = coalesce(k.register_code, '') "
    "AND (s.register_code IS NULL) = (k.register_code IS NULL) "
    "AND coalesce(s.unit, '') = coalesce(k.unit, '') AND (s.unit IS NULL) = (k.unit IS NULL)"
)


class _Check(NamedTuple):
    condition: str  # SQL: the row has the problem
    problem: str  # SQL: the problem as {"code", "params"} when it has, else NULL


def _problem(code: str, condition: str, **params: str) -> _Check:
    """One row check. The parameters are SQL expressions, stored as text
    (meters.ingest.errors)."""
    pairs = ", ".join(f"'{name}', ({expression})::text" for name, expression in params.items())
    return _Check(
        condition,
        f"CASE WHEN {condition} THEN jsonb_build_object('code', '{code}', "
        f"'params', jsonb_build_object({pairs})) END",
    )


def _add_problems(*checks: _Check) -> str:
    """SQL for the row's `reject` with the problems of `checks` added, so that every check runs
    and a row reports all its problems (update only rows where `_any(checks)` holds)."""
    rows = ", ".join(f"({n}, {check.problem})" for n, check in enumerate(checks))
    return (
        "nullif(coalesce(reject, '[]'::jsonb) || coalesce((SELECT jsonb_agg(p ORDER BY n) "
        f"FROM (VALUES {rows}) v(n, p) WHERE p IS NOT NULL), '[]'::jsonb), '[]'::jsonb)"
    )


def _any(*checks: _Check) -> str:
    """SQL: the row has one of the problems; good rows are left alone, not rewritten."""
    return " OR ".join(f"coalesce({check.condition}, false)" for check in checks)


def _check_rows(stage: sql.Identifier, params: dict[str, Any]) -> None:
    """The checks a row needs nothing else for: they run before meters are registered, so that
    a meter seen only in impossible rows is not created and they do not skew its interval."""
    future = f"coalesce(received_at, %(received)s) + interval '{q.FUTURE_TOLERANCE}'"
    checks = [
        _problem(
            "out_of_range",
            "abs(value) > %(max)s OR value = 'NaN'",
            field="'value'",
            value="value",
        ),
        _problem(
            "out_of_range",
            "abs(delta) > %(max)s OR delta = 'NaN'",
            field="'delta'",
            value="delta",
        ),
        _problem("negative_register_value", "value < 0", value="value"),
        _problem("future_timestamp", f"ts > {future}", timestamp=_TIMESTAMP.format("ts")),
        _problem(
            "timestamp_before_1990",
            "ts < '1990-01-01T00:00:00Z'",
            timestamp=_TIMESTAMP.format("ts"),
        ),
        *(
            _problem(
                "unsafe_text",
                f"{column} ~ %(unsafe)s",
                field=f"'{field}'",
                value=f"left({column}, 100)",
            )
            for column, field in (
                ("serial", "meter_serial"),
                ("dev_eui", "dev_eui"),
                ("register_code", "register"),
            )
        ),
    ]
    _exec(
        sql.SQL(
            "UPDATE {s} SET reject = " + _add_problems(*checks) + " WHERE " + _any(*checks)
        ).format(s=stage),
        params,
    )
    # Interval rows of one meter and register whose periods overlap without being the same
    # period (that is a duplicate): neither can be right, and merged they would count the
    # overlap twice. Each names a line it overlaps. Over the distinct periods in start order,
    # a period overlaps an earlier one iff it starts before the latest end so far, and a later
    # one iff the next one starts before it ends: two windows, no pairwise join. Periods of a
    # day or more may overlap by an hour: billing periods whose ends a utility computed across
    # a DST change (the NGMA sample's bills overlap by exactly that hour twice a year).
    key = ("coalesce(serial, '')", "coalesce(upper(dev_eui), '')", "coalesce(register_code, '')")
    _exec(
        sql.SQL(
            f"""
            WITH p AS (
                SELECT {key[0]} AS k1, {key[1]} AS k2, {key[2]} AS k3,
                       ts - make_interval(secs => duration_s) AS lo, ts AS hi, min(line) AS line,
                       CASE WHEN duration_s >= 86400 THEN 3600 ELSE 0 END AS slack
                FROM {{s}} WHERE delta IS NOT NULL AND duration_s > 0
                GROUP BY 1, 2, 3, 4, 5, 7
            ), w AS (
                SELECT p.*,
                       max(ARRAY[extract(epoch FROM hi), line]) OVER (
                           k ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before,
                       lead(lo) OVER k AS next_lo, lead(line) OVER k AS next_line
                FROM p WINDOW k AS (PARTITION BY k1, k2, k3 ORDER BY lo, hi)
            ), o AS (
                SELECT k1, k2, k3, lo, hi,
                       CASE WHEN before[1] > extract(epoch FROM lo) + slack THEN before[2]::bigint
                            ELSE next_line END AS other
                FROM w
                WHERE before[1] > extract(epoch FROM lo) + slack
                   OR next_lo < hi - make_interval(secs => slack)
            )
            UPDATE {{s}} s SET reject = """
            + _add_problems(_problem("overlapping_period", "true", line="o.other"))
            + f"""
            FROM o
            WHERE {key[0]} = o.k1 AND {key[1]} = o.k2 AND {key[2]} = o.k3
              AND s.delta IS NOT NULL AND s.duration_s > 0
              AND s.ts - make_interval(secs => s.duration_s) = o.lo AND s.ts = o.hi
            """
        ).format(s=stage),
        params,
    )


def resolve(batch: ImportBatch, *, subtree: list[int] | None) -> None:
    """Check rows, resolve meters, registers and units; reject rows; fail on structural
    problems.

    :raises BatchError: on units that do not exist or do not fit the register, or meters of
        conflicting kinds.
    """
    stage = staging.stage_table(batch.pk)
    params: dict[str, Any] = {
        **_units_param(),
        "max": MAX_SOURCE_MAGNITUDE,
        "bigint": _BIGINT_MAX,
        "unsafe": _UNSAFE_TEXT,
        "received": batch.received_at,
        "org": batch.organisation_id,
        "subtree": subtree,
        "batch": batch.pk,
    }
    with transaction.atomic():
        _set_wise_session()
        _fail_if_any(
            sql.SQL(
                "SELECT line, 'unknown unit \"' || unit || '\"' FROM {s} "
                "WHERE unit <> ALL(%(symbols)s) ORDER BY line"
            ).format(s=stage),
            params,
            "The file uses units this portal does not know.",
        )
        _check_rows(stage, params)
        # Meters and registers are resolved on the batch's distinct keys (a few per meter,
        # however many rows), then written to every row with its base values and rejections
        # in one pass over staging (it took seven).
        _exec(
            sql.SQL(
                "CREATE TEMP TABLE m_keys ON COMMIT DROP AS "
                "SELECT DISTINCT serial, dev_eui, register_code, unit, "
                "NULL::bigint AS meter_id, NULL::bigint AS register_id FROM {s}"
            ).format(s=stage)
        )
        # Meters: by serial, else by LoRaWAN DevEUI; organisations send only their own.
        owner = "AND m.organisation_id = ANY(%(subtree)s)" if subtree is not None else ""
        _exec(
            "UPDATE m_keys k SET meter_id = m.id FROM meters_meter m "
            "WHERE k.serial IS NOT NULL AND m.serial = k.serial " + owner,
            params,
        )
        _exec(
            "UPDATE m_keys k SET meter_id = m.id FROM meters_meter m "
            "WHERE k.meter_id IS NULL AND k.dev_eui IS NOT NULL "
            "AND m.dev_eui = upper(k.dev_eui) " + owner,
            params,
        )
        if batch.register_meters:
            # Registration works on the rows: it needs their known meters, and tells the keys
            # the meters it made.
            _exec(
                sql.SQL(
                    "UPDATE {s} s SET meter_id = k.meter_id FROM m_keys k "
                    "WHERE k.meter_id IS NOT NULL AND " + _SAME_KEY
                ).format(s=stage)
            )
            _register_meters(batch, stage, params)
            _exec(
                sql.SQL(
                    "UPDATE m_keys k SET meter_id = s.meter_id "
                    "FROM (SELECT DISTINCT serial, dev_eui, register_code, unit, meter_id FROM {s} "
                    "      WHERE meter_id IS NOT NULL) s "
                    "WHERE k.meter_id IS NULL AND " + _SAME_KEY
                ).format(s=stage)
            )
        _exec(
            "UPDATE m_keys k SET register_id = r.id FROM meters_register r "
            "WHERE k.meter_id = r.meter_id AND r.code = k.register_code"
        )
        _exec(
            "UPDATE m_keys k SET register_id = r.id FROM meters_register r "
            "WHERE k.register_id IS NULL AND k.register_code IS NULL "
            "AND k.meter_id = r.meter_id AND r.is_main"
        )
        _exec("ANALYZE m_keys")
        # The keys whose unit does not fit their register; only when there are any, their
        # rows' lines (a scan of staging in line order otherwise, for nothing).
        _exec(
            "CREATE TEMP TABLE m_misfit ON COMMIT DROP AS "
            "SELECT k.*, r.code, r.unit AS register_unit FROM m_keys k "
            "JOIN meters_register r ON r.id = k.register_id "
            "JOIN " + _UNITS + " ON u.symbol = k.unit WHERE u.base <> r.unit",
            params,
        )
        if _exec("SELECT EXISTS (SELECT 1 FROM m_misfit)")[0][0]:
            _fail_if_any(
                sql.SQL(
                    "SELECT s.line, 'unit ' || s.unit || ' does not fit register ' || k.code "
                    "|| ', measured in ' || k.register_unit "
                    "FROM m_misfit k JOIN {s} s ON " + _SAME_KEY + " "
                    "WHERE s.reject IS NULL ORDER BY s.line"
                ).format(s=stage),
                params,
                "Units do not fit the registers.",
            )
        # In base units a value must fit a bigint: checked before the casts, which would
        # otherwise fail the whole transaction.
        too_big = [
            _problem(
                "out_of_range",
                f"abs(round(s.{column} * u.factor * r.multiplier)) > %(bigint)s",
                field=f"'{column}'",
                value=f"s.{column}",
            )
            for column in ("value", "delta")
        ]
        # With --register-meters, a meter or register missing for a row already rejected is
        # the consequence of its problems (it was not registered for them), not another one.
        consequence = "s.reject IS NOT NULL" if batch.register_meters else "false"
        meter = "coalesce(s.serial, s.dev_eui, '')"
        unresolved = [
            _problem("unknown_meter", "k.meter_id IS NULL", meter=meter),
            _problem(
                "no_register",
                "k.meter_id IS NOT NULL AND k.register_id IS NULL",
                meter=meter,
                register="coalesce(s.register_code, '(main)')",
            ),
        ]
        stored = f"r.id IS NOT NULL AND s.reject IS NULL AND NOT ({_any(*too_big)})"
        _exec(
            sql.SQL(
                "UPDATE {s} s SET meter_id = k.meter_id, register_id = k.register_id, "
                f"base_value = CASE WHEN {stored} "
                "THEN round(s.value * u.factor * r.multiplier)::bigint END, "
                f"base_delta = CASE WHEN {stored} "
                "THEN round(s.delta * u.factor * r.multiplier)::bigint END, "
                "reject = CASE "
                f"WHEN r.id IS NOT NULL AND s.reject IS NULL AND ({_any(*too_big)}) "
                f"THEN {_add_problems(*too_big)} "
                f"WHEN r.id IS NULL AND NOT ({consequence}) THEN {_add_problems(*unresolved)} "
                "ELSE s.reject END "
                "FROM m_keys k LEFT JOIN meters_register r ON r.id = k.register_id "
                "LEFT JOIN " + _UNITS + " ON u.symbol = k.unit "
                "WHERE " + _SAME_KEY
            ).format(s=stage),
            params,
        )
        _exec("DROP TABLE m_keys, m_misfit")
        # `rejected` counts rows; each problem is a row error of its own, up to the cap.
        rejected, problems = _exec(
            sql.SQL(
                "SELECT count(*), coalesce(sum(jsonb_array_length(reject)), 0) FROM {s} "
                "WHERE reject IS NOT NULL"
            ).format(s=stage)
        )[0]
        room = max(0, staging.MAX_STORED_ROW_ERRORS - batch.row_error_count)
        _exec(
            sql.SQL(
                """
                INSERT INTO meters_importrowerror (batch_id, line, code, params, message)
                SELECT %(batch)s, s.line, p.value->>'code', p.value->'params', ''
                FROM {s} s
                CROSS JOIN LATERAL jsonb_array_elements(s.reject) WITH ORDINALITY p(value, n)
                WHERE s.reject IS NOT NULL
                ORDER BY s.line, p.n LIMIT %(room)s
                """
            ).format(s=stage),
            {**params, "room": room},
        )
        _exec(
            sql.SQL("CREATE INDEX ON {s} (register_id) WHERE reject IS NULL; ANALYZE {s}").format(
                s=stage
            )
        )
        _ensure_partitions(stage)
        plan = chunk_plan(batch)
        batch.rejected += rejected
        batch.row_error_count += int(problems)
        batch.stage = ImportBatch.Stage.MERGING
        batch.chunks_total = len(plan)
        batch.chunks_done = 0
        batch.progress = 20
        _save(
            batch, "rejected", "row_error_count", "stage", "chunks_total", "chunks_done", "progress"
        )


def _register_meters(batch: ImportBatch, stage: sql.Identifier, params: dict[str, Any]) -> None:
    """Create the unknown meters (and registers) the batch names, on new service points."""
    _fail_if_any(
        sql.SQL(
            "SELECT min(line), 'meter \"' || serial || '\" appears as several kinds' "
            "FROM {s} WHERE meter_id IS NULL AND serial IS NOT NULL AND kind IS NOT NULL "
            "AND reject IS NULL "
            "GROUP BY serial HAVING count(DISTINCT kind) > 1 ORDER BY 1"
        ).format(s=stage),
        params,
        "Conflicting meter kinds.",
    )
    _check_stated_zones(stage, params)
    params = {**params, "tz": registration_time_zone(batch)}
    communication = {
        "dsmr": "p1",
        "chirpstack": "lorawan",
    }.get(batch.format, "manual")
    max_rates = (
        "CASE "
        + " ".join(f"WHEN kind = '{kind}' THEN {rate}" for kind, rate in DEFAULT_MAX_RATE.items())
        + " END"
    )
    stuck = (
        "CASE "
        + " ".join(
            f"WHEN m.kind = '{kind}' THEN {hours}" for kind, hours in DEFAULT_STUCK_HOURS.items()
        )
        + " END"
    )
    _exec(
        sql.SQL(
            "CREATE TEMP TABLE m_new_meters ON COMMIT DROP AS "
            "SELECT serial, min(kind) AS kind, upper(max(dev_eui)) AS dev_eui, "
            "min(coalesce(ts - make_interval(secs => duration_s), ts)) AS first_ts, "
            "min(time_zone) AS time_zone "
            "FROM {s} WHERE meter_id IS NULL AND serial IS NOT NULL AND kind IS NOT NULL "
            # A meter seen only in rejected rows is not registered.
            "AND reject IS NULL "
            "GROUP BY serial"
        ).format(s=stage)
    )
    _exec(
        "INSERT INTO meters_meter (public_id, serial, kind, communication, dev_eui, "
        "organisation_id, max_rate, valve_state, created_at) "
        "SELECT gen_random_uuid(), serial, kind, %(comm)s, dev_eui, %(org)s, "
        f"{max_rates}, '', now() "
        "FROM m_new_meters ON CONFLICT DO NOTHING",
        {**params, "comm": communication},
    )
    _exec(
        "INSERT INTO meters_servicepoint (public_id, code, kind, address, time_zone, created_at) "
        "SELECT gen_random_uuid(), left('SP-' || n.serial, 64), n.kind, '', "
        "coalesce(n.time_zone, %(tz)s), now() "
        "FROM m_new_meters n JOIN meters_meter m ON m.serial = n.serial "
        "WHERE NOT EXISTS (SELECT 1 FROM meters_meterinstallation mi WHERE mi.meter_id = m.id) "
        "ON CONFLICT DO NOTHING",
        params,
    )
    _exec(
        "INSERT INTO meters_meterinstallation (meter_id, service_point_id, installed_at) "
        "SELECT m.id, sp.id, n.first_ts - interval '1 second' "
        "FROM m_new_meters n JOIN meters_meter m ON m.serial = n.serial "
        "JOIN meters_servicepoint sp ON sp.code = left('SP-' || n.serial, 64) "
        "WHERE NOT EXISTS (SELECT 1 FROM meters_meterinstallation mi WHERE mi.meter_id = m.id)"
    )
    _exec(
        sql.SQL(
            "UPDATE {s} s SET meter_id = m.id FROM meters_meter m "
            "WHERE s.meter_id IS NULL AND m.serial = s.serial"
        ).format(s=stage)
    )
    # The interval a new register reports at: stated by the format, or else the spacing most
    # of its good rows share (half of them at least), so that short gaps can be estimated. A
    # spacing beyond a day is no reporting interval (and far-apart rows would not fit int4).
    _exec(
        sql.SQL(
            """
            CREATE TEMP TABLE m_new_intervals ON COMMIT DROP AS
            SELECT meter_id, code, mode() WITHIN GROUP (ORDER BY step) AS step,
                   count(*) AS steps
            FROM (SELECT meter_id, coalesce(register_code, 'import') AS code,
                         extract(epoch FROM ts - lag(ts) OVER (
                             PARTITION BY meter_id, coalesce(register_code, 'import')
                             ORDER BY ts))::bigint AS step
                  FROM {s} WHERE meter_id IS NOT NULL AND reject IS NULL) d
            WHERE step > 0 AND step <= %(max_step)s
            GROUP BY meter_id, code
            """
        ).format(s=stage),
        {"max_step": MAX_GUESSED_INTERVAL},
    )
    _exec(
        sql.SQL(
            """
            DELETE FROM m_new_intervals i
            WHERE steps < 2 OR (SELECT count(*) FROM (
                SELECT extract(epoch FROM ts - lag(ts) OVER (ORDER BY ts))::bigint AS step
                FROM {s} WHERE meter_id = i.meter_id AND reject IS NULL
                  AND coalesce(register_code, 'import') = i.code) x
                WHERE x.step = i.step) * 2 < i.steps
            """
        ).format(s=stage)
    )
    # Registers the rows name (or the main import register), with what the format states.
    _exec(
        sql.SQL(
            f"""
            INSERT INTO meters_register (meter_id, code, direction, tariff_rate, unit, series,
                                         dials, display_unit, multiplier, wrap_value, obis,
                                         interval_seconds, is_main, stuck_hours)
            SELECT DISTINCT ON (s.meter_id, coalesce(s.register_code, 'import'))
                   s.meter_id, coalesce(s.register_code, 'import'),
                   coalesce(s.direction, 'import'), s.tariff_rate, u.base,
                   coalesce(s.series, CASE WHEN s.value IS NOT NULL THEN 'register'
                                           ELSE 'interval' END),
                   NULL, '', 1, NULL, coalesce(s.obis, ''), coalesce(s.interval_s, i.step),
                   false, {stuck}
            FROM {{s}} s
            JOIN meters_meter m ON m.id = s.meter_id
            JOIN {_UNITS} ON u.symbol = s.unit
            LEFT JOIN m_new_intervals i
              ON i.meter_id = s.meter_id AND i.code = coalesce(s.register_code, 'import')
            WHERE s.meter_id IS NOT NULL AND s.reject IS NULL
              AND NOT EXISTS (SELECT 1 FROM meters_register r
                              WHERE r.meter_id = s.meter_id
                                AND r.code = coalesce(s.register_code, 'import'))
              AND (s.register_code IS NOT NULL
                   OR NOT EXISTS (SELECT 1 FROM meters_register r
                                  WHERE r.meter_id = s.meter_id AND r.is_main))
            ORDER BY s.meter_id, coalesce(s.register_code, 'import'), s.line
            ON CONFLICT DO NOTHING
            """
        ).format(s=stage),
        params,
    )
    # Every meter gets a main import register: the import register with the lowest code.
    _exec(
        """
        UPDATE meters_register r SET is_main = true
        FROM (SELECT DISTINCT ON (meter_id) id FROM meters_register
              WHERE direction = 'import'
                AND meter_id NOT IN (SELECT meter_id FROM meters_register WHERE is_main)
              ORDER BY meter_id, code) first
        WHERE r.id = first.id
        """
    )
    # A meter this option registered earlier, on its own service point, was installed just
    # before the first reading of the batch that registered it. Older readings arriving later
    # (files out of order, or two files racing) would reach no service point, so no rollup,
    # chart or bill would count them: move that installation back to cover them. Only such a
    # self-made installation moves; one that staff placed, or a service point with other
    # meters, stays as it is (issue 12, found by make verify).
    # Reading the readings here locks its partitions against the ATTACH of a new month in
    # another batch's _ensure_partitions: take the partition lock first (this transaction
    # takes it there anyway), or two batches registering at once deadlock.
    _exec("SELECT pg_advisory_xact_lock(%s)", [q.PARTITION_LOCK])
    _exec(
        sql.SQL(
            """
            UPDATE meters_meterinstallation mi
            SET installed_at = e.first_ts - interval '1 second'
            FROM (SELECT meter_id,
                         min(coalesce(ts - make_interval(secs => duration_s), ts)) AS first_ts
                  FROM {s} WHERE meter_id IS NOT NULL AND reject IS NULL
                  GROUP BY meter_id) e
            JOIN meters_meter m ON m.id = e.meter_id
            JOIN meters_servicepoint sp ON sp.code = left('SP-' || m.serial, 64)
            WHERE mi.meter_id = e.meter_id AND mi.service_point_id = sp.id
              AND mi.removed_at IS NULL
              AND mi.installed_at > e.first_ts - interval '1 second'
              -- Still where registration put it: just before the meter's first stored reading
              -- (or with none stored yet, when the registering batch is still merging).
              AND mi.installed_at = coalesce(
                  (SELECT min(r.ts) FROM meters_register g
                   CROSS JOIN LATERAL meters_reading_after(g.id, '-infinity') r
                   WHERE g.meter_id = mi.meter_id) - interval '1 second',
                  mi.installed_at)
              AND NOT EXISTS (SELECT 1 FROM meters_meterinstallation o
                              WHERE o.id <> mi.id
                                AND (o.meter_id = mi.meter_id
                                     OR o.service_point_id = mi.service_point_id))
            """
        ).format(s=stage)
    )
    _exec("DROP TABLE m_new_meters, m_new_intervals")


def registration_time_zone(batch: ImportBatch) -> str:
    """The zone of a service point the batch registers when the file states none: the one
    the sender gave with the batch, else the organisation's, else the site's."""
    if batch.time_zone:
        return batch.time_zone
    if batch.organisation is not None:
        return batch.organisation.time_zone
    return default_time_zone()


def _check_stated_zones(stage: sql.Identifier, params: dict[str, Any]) -> None:
    """Fail on zones a new meter's rows state that are unknown or disagree.

    The zone decides every local day of the service point from then on, so two of them for
    one meter is a confused file: like conflicting kinds it fails before anything is merged,
    rather than letting the first row's zone win unseen.

    :raises BatchError: naming the meters and zones.
    """
    _fail_if_any(
        sql.SQL(
            "SELECT min(line), 'meter \"' || serial || '\" is stated in the zones ' "
            "|| string_agg(DISTINCT time_zone, ' and ') "
            "FROM {s} WHERE meter_id IS NULL AND serial IS NOT NULL AND time_zone IS NOT NULL "
            "GROUP BY serial HAVING count(DISTINCT time_zone) > 1 ORDER BY 1"
        ).format(s=stage),
        params,
        "Conflicting time zones.",
    )
    stated = _exec(
        sql.SQL(
            "SELECT min(line), time_zone FROM {s} WHERE meter_id IS NULL "
            "AND time_zone IS NOT NULL GROUP BY time_zone ORDER BY 1"
        ).format(s=stage)
    )
    unknown = [(line, zone) for line, zone in stated if zone not in available_time_zones()]
    if unknown:
        listed = "; ".join(f"line {line}: unknown time zone {zone!r}" for line, zone in unknown)
        raise BatchError(f"The file states unknown time zones. Nothing was imported. {listed}")


def _ensure_partitions(stage: sql.Identifier) -> None:
    """Create the monthly partitions the batch needs, so no row lands in the default one."""
    months = _exec(
        sql.SQL(
            "SELECT DISTINCT (date_trunc('month', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') "
            "FROM {s} WHERE reject IS NULL AND register_id IS NOT NULL"
        ).format(s=stage)
    )
    if not months:
        return
    _exec("SELECT pg_advisory_xact_lock(%s)", [q.PARTITION_LOCK])
    for parent in q.READING_TABLES:
        _exec(
            "SELECT partman.create_partition_time(%s, %s::timestamptz[])",
            [parent, [month for (month,) in months]],
        )


def chunk_plan(batch: ImportBatch) -> list[list[int]]:
    """Group the batch's registers into chunks of about PORTAL_IMPORT_CHUNK_ROWS rows; the plan
    is deterministic, so a resumed batch skips exactly the chunks already merged."""
    counts = _exec(
        sql.SQL(
            "SELECT register_id, count(*) FROM {s} WHERE reject IS NULL "
            "GROUP BY register_id ORDER BY register_id"
        ).format(s=staging.stage_table(batch.pk))
    )
    chunk_rows = settings.PORTAL_IMPORT_CHUNK_ROWS
    chunks: list[list[int]] = []
    current: list[int] = []
    size = 0
    for register_id, count in counts:
        current.append(register_id)
        size += count
        if size >= chunk_rows:
            chunks.append(current)
            current, size = [], 0
    if current:
        chunks.append(current)
    return chunks


# --- merging --------------------------------------------------------------------------------


def merge_chunk(batch: ImportBatch, registers: list[int]) -> None:
    """Validate and merge one chunk of registers, refresh its rollups, advance the checkpoint."""
    stage = staging.stage_table(batch.pk)
    params = {**q.PARAMS, "regs": registers, "batch": batch.pk}
    with transaction.atomic():
        _set_wise_session()
        _exec(
            "SELECT pg_advisory_xact_lock(%s + r) FROM unnest(%s::bigint[]) r ORDER BY r",
            [q.REGISTER_LOCK, registers],
        )
        _exec(sql.SQL(q.CANDIDATES).format(stage=stage), params)
        _exec("ANALYZE m_cls")
        _exec(q.CONFLICTS, params)
        duplicates, conflicts = _exec(q.COUNTS)[0]
        _exec(q.NEW_ROWS.replace("{max_gap}", q.MAX_GAP_ESTIMATE), params)
        _exec(q.CONTEXT, params)
        _exec("ANALYZE m_s")
        _exec(q.GAPS.replace("{max_gap}", q.MAX_GAP_ESTIMATE), params)
        _exec(q.CALCULATE, params)
        _exec("ANALYZE m_calc")
        _exec(q.WRITE, params)
        inserted, estimated = _exec(q.WRITTEN, params)[0]
        _exec(q.AFFECTED)
        refresh_rollups(params)
        batch.duplicate += duplicates
        batch.conflicting += conflicts
        batch.inserted += inserted
        batch.estimated += estimated
        batch.chunks_done += 1
        batch.progress = 20 + int(75 * batch.chunks_done / max(batch.chunks_total, 1))
        _save(batch, "duplicate", "conflicting", "inserted", "estimated", "chunks_done", "progress")
        _drop_temp_tables()


def refresh_rollups(params: dict[str, Any]) -> None:
    """Recompute the hourly and daily rollups of what m_aff names (in the caller's txn)."""
    _exec(q.ROLLUP_RANGES.replace("{sp_lock}", str(q.SERVICE_POINT_LOCK)))
    _exec(q.ROLLUP_HOURLY, params)
    _exec(q.ROLLUP_DAILY)


def _drop_temp_tables() -> None:
    _exec("DROP TABLE IF EXISTS " + ", ".join(q.TEMP_TABLES))


# --- finishing ------------------------------------------------------------------------------


def finish(batch: ImportBatch, *, as_of: dt.datetime) -> int:
    """Store the batch's events and meter status; return how many events were new."""
    events = staging.event_table(batch.pk)
    stage = staging.stage_table(batch.pk)
    severity = (
        "CASE "
        + " ".join(
            f"WHEN e.kind = '{kind}' THEN {int(level)}" for kind, level in EVENT_SEVERITY.items()
        )
        + f" ELSE {int(MeterEvent.Severity.INFO)} END"
    )
    with transaction.atomic():
        _exec(
            sql.SQL(
                "UPDATE {e} e SET meter_id = m.id FROM meters_meter m "
                "WHERE (e.serial IS NOT NULL AND m.serial = e.serial) "
                "OR (e.serial IS NULL AND e.dev_eui IS NOT NULL AND m.dev_eui = upper(e.dev_eui))"
            ).format(e=events)
        )
        # Status reports: battery level and valve position, latest first.
        _exec(
            sql.SQL(
                """
                UPDATE meters_meter m SET
                    battery_percent = coalesce(x.battery, m.battery_percent),
                    valve_state = coalesce(x.valve, m.valve_state)
                FROM (SELECT DISTINCT ON (meter_id) meter_id,
                             least(100, greatest(0, round((data->>'battery')::numeric)))::smallint
                                 AS battery,
                             data->>'valve' AS valve
                      FROM {e} WHERE kind = 'status' AND meter_id IS NOT NULL
                      ORDER BY meter_id, occurred_at DESC) x
                WHERE m.id = x.meter_id
                """
            ).format(e=events)
        )
        _exec(
            sql.SQL(
                "INSERT INTO {e} (line, kind, occurred_at, data, meter_id) "
                "SELECT line, 'battery_low', occurred_at, data, meter_id FROM {e} "
                "WHERE kind = 'status' AND meter_id IS NOT NULL "
                "AND (data->>'battery')::numeric < %(low)s"
            ).format(e=events),
            {"low": BATTERY_LOW_PERCENT},
        )
        rows = _exec(
            sql.SQL(
                f"""
                WITH ins AS (
                    INSERT INTO meters_meterevent (meter_id, service_point_id, account_id, kind,
                                                   severity, occurred_at, data, batch_id,
                                                   created_at)
                    SELECT DISTINCT ON (e.meter_id, e.kind, e.occurred_at)
                           e.meter_id, mi.service_point_id, sup.account_id, e.kind,
                           {severity}, e.occurred_at, e.data, %(batch)s, now()
                    FROM {{e}} e
                    LEFT JOIN meters_meterinstallation mi
                      ON mi.meter_id = e.meter_id AND mi.installed_at <= e.occurred_at
                     AND (mi.removed_at IS NULL OR mi.removed_at > e.occurred_at)
                    LEFT JOIN meters_supply sup
                      ON sup.service_point_id = mi.service_point_id
                     AND sup.start <= e.occurred_at
                     AND (sup."end" IS NULL OR sup."end" > e.occurred_at)
                    WHERE e.meter_id IS NOT NULL AND e.kind <> 'status'
                    ORDER BY e.meter_id, e.kind, e.occurred_at, e.line
                    ON CONFLICT DO NOTHING
                    RETURNING 1
                )
                SELECT count(*) FROM ins
                """
            ).format(e=events),
            {"batch": batch.pk},
        )
        new_events = int(rows[0][0])
        (events_sent,) = _exec(sql.SQL("SELECT count(*) FROM {e}").format(e=events))[0]
        _exec(
            sql.SQL(
                # Any message is contact: readings, status reports and alarms alike (a clock
                # running ahead does not move it past the present).
                "UPDATE meters_meter m SET last_contact_at = greatest(m.last_contact_at, x.ts) "
                "FROM (SELECT meter_id, least(max(ts), %(now)s) AS ts FROM ("
                "  SELECT meter_id, ts FROM {s} WHERE reject IS NULL AND meter_id IS NOT NULL"
                "  UNION ALL SELECT meter_id, occurred_at FROM {e} WHERE meter_id IS NOT NULL"
                ") contact GROUP BY meter_id) x "
                "WHERE m.id = x.meter_id"
            ).format(s=stage, e=events),
            {"now": as_of},
        )
        staging.drop_tables(batch.pk)
        batch.status, batch.error = outcome(batch, events=int(events_sent))
        batch.error_class = ""
        batch.next_attempt_at = None
        batch.stage = ImportBatch.Stage.NONE
        batch.progress = 100
        batch.finished_at = as_of
        _save(
            batch,
            "stage",
            "status",
            "error",
            "error_class",
            "next_attempt_at",
            "progress",
            "finished_at",
        )
    return new_events


def outcome(batch: ImportBatch, *, events: int) -> tuple[str, str]:
    """The final state of a batch whose every stage ran, and its message.

    A row is accepted when it was read and matched a register: inserted, or already stored
    (duplicate), or stored with another value (conflicting: kept apart for review). Those are
    the sender's data, understood; only rejected rows are not. Events (alarms, status reports)
    count as data too, so a file of only events is done.
    """
    accepted = batch.seen - batch.rejected + events
    if batch.seen == 0 and events == 0:
        # Stored in English like the file-level errors; the pages show the state translated.
        return ImportBatch.Status.REJECTED, "The file has no data rows: nothing was imported."
    if accepted <= 0:
        return (
            ImportBatch.Status.REJECTED,
            f"All {batch.rejected} rows were rejected: nothing was imported. "
            "The row errors say why.",
        )
    if batch.rejected:
        return ImportBatch.Status.DONE_WITH_REJECTIONS, ""
    return ImportBatch.Status.DONE, ""


def fail(batch: ImportBatch, message: str, *, as_of: dt.datetime, error_class: str = "") -> None:
    """Mark the batch failed with a message for people (and, for an unexpected error, the
    exception's class for operators); drop what it staged."""
    with transaction.atomic():
        try:
            staging.drop_tables(batch.pk)
        except DatabaseError:
            logger.exception("could not drop the staging tables of batch %s", batch.pk)
            raise
        batch.status = ImportBatch.Status.FAILED
        # A message may quote the file; keep what PostgreSQL text and people can read.
        batch.error = "".join(c if c.isprintable() or c == "\n" else "?" for c in message[:5000])
        batch.error_class = error_class[:200]
        batch.next_attempt_at = None
        batch.stage = ImportBatch.Stage.NONE
        batch.finished_at = as_of
        _save(batch, "status", "error", "error_class", "next_attempt_at", "stage", "finished_at")
