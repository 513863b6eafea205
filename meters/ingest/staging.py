"""Per-batch staging tables and the streaming writers that fill them.

Each batch gets two tables, `meters_stage_<id>` (readings) and `meters_stagev_<id>` (events and
meter status), which survive a worker crash so that a resumed batch need not parse its file
again, and are dropped when the batch ends. They are logged tables: crash recovery empties an
UNLOGGED table, and a resumed batch then finished "done" on what was left (issue 12). The stage
that follows the parse also checks the tables still hold what the parse counted
(pipeline.staging_lost) and starts again from the file if not.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection
from psycopg import sql
from psycopg.types.json import Jsonb

from meters.ingest.units import MAX_SOURCE_MAGNITUDE

# Source flags carried by a reading row (bits of meters.models.Rule that a source can assert).
SOURCE_TAMPER = 1 << 14


@dataclass(slots=True)
class StageRow:
    """One reading as a format parser produces it, before units and meters are resolved."""

    line: int
    ts: dt.datetime
    unit: str
    serial: str | None = None
    dev_eui: str | None = None
    register_code: str | None = None
    value: Decimal | None = None
    delta: Decimal | None = None
    duration_s: int | None = None
    received_at: dt.datetime | None = None
    src_flags: int = 0
    kind: str | None = None
    direction: str | None = None
    tariff_rate: int | None = None
    obis: str | None = None
    series: str | None = None
    interval_s: int | None = None
    # The IANA zone the file states for the meter's place (ESPI LocalTimeParameters, DSMR's
    # country); a service point registered by the import takes it.
    time_zone: str | None = None


@dataclass(slots=True)
class StageEvent:
    """A meter event, or a status report (kind "status" with data such as battery)."""

    line: int
    kind: str
    occurred_at: dt.datetime
    serial: str | None = None
    dev_eui: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RowError:
    """A row the parser could not turn into a reading; the rest of the batch goes on.

    `code` names the problem (meters.ingest.errors.ROW_ERRORS) and `params` its facts; the
    sentence is made in the reader's language when it is shown.
    """

    line: int
    code: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> str:
        from meters.ingest.errors import render

        return render(self.code, self.params)


class BatchError(Exception):
    """The file is structurally broken: the whole batch fails and nothing is merged."""


ParsedItem = StageRow | StageEvent | RowError

STAGE_COLUMNS = (
    ("line", "int8"),
    ("serial", "text"),
    ("dev_eui", "text"),
    ("register_code", "text"),
    ("kind", "text"),
    ("direction", "text"),
    ("tariff_rate", "int2"),
    ("obis", "text"),
    ("series", "text"),
    ("interval_s", "int4"),
    ("ts", "timestamptz"),
    ("value", "numeric"),
    ("delta", "numeric"),
    ("unit", "text"),
    ("duration_s", "int4"),
    ("received_at", "timestamptz"),
    ("src_flags", "int4"),
    ("time_zone", "text"),
)
EVENT_COLUMNS = (
    ("line", "int8"),
    ("serial", "text"),
    ("dev_eui", "text"),
    ("kind", "text"),
    ("occurred_at", "timestamptz"),
    ("data", "jsonb"),
)


def stage_table(batch_id: int) -> sql.Identifier:
    return sql.Identifier(f"meters_stage_{batch_id}")


def event_table(batch_id: int) -> sql.Identifier:
    return sql.Identifier(f"meters_stagev_{batch_id}")


def raw_csv_table(batch_id: int) -> sql.Identifier:
    return sql.Identifier(f"meters_stagecsv_{batch_id}")


def _execute(statement: sql.Composable, params: Any = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement.as_string(cursor.connection), params)


def create_tables(batch_id: int) -> None:
    """(Re)create the batch's empty staging tables.

    `reject` is NULL for a good row, else the array of its problems as the row checks find them
    ([{"code": ..., "params": {...}}, ...], see meters.ingest.errors), so that a row reports all
    of them and the reader's language makes the sentences.
    """
    drop_tables(batch_id)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in STAGE_COLUMNS
    )
    _execute(
        sql.SQL(
            "CREATE TABLE {} ({}, meter_id bigint, register_id bigint, "
            "base_value bigint, base_delta bigint, reject jsonb)"
        ).format(stage_table(batch_id), columns)
    )
    event_columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in EVENT_COLUMNS
    )
    _execute(
        sql.SQL("CREATE TABLE {} ({}, meter_id bigint)").format(
            event_table(batch_id), event_columns
        )
    )


def drop_tables(batch_id: int) -> None:
    for table in (stage_table(batch_id), event_table(batch_id), raw_csv_table(batch_id)):
        _execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


@dataclass
class StageResult:
    rows: int = 0
    events: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    # Rows with at least one error: a row may have several problems, each its own RowError.
    rejected_rows: int = 0


# The longest period a reading may cover (a year's bill): the rollups spread a reading over
# every hour of its period, so 2**31 seconds would be 600 000 hours of one row.
MAX_DURATION_S = 366 * 86_400
# The ranges the staging table's integer columns accept ([low, high)): a value beyond its
# column's type would make the binary COPY raise in the middle of the batch, and a negative
# length is no length.
_INT_FIELDS = (
    ("tariff_rate", "tariff", -(2**15), 2**15),
    ("interval_s", "interval", 1, MAX_DURATION_S + 1),
    ("duration_s", "duration", 0, MAX_DURATION_S + 1),
)


def number_problem(line: int, name: str, number: Decimal) -> RowError | None:
    """A value or delta beyond what a reading can be (MAX_SOURCE_MAGNITUDE), or that
    PostgreSQL's numeric cannot hold; None when it is plausible."""
    if number.is_finite() and abs(number) <= MAX_SOURCE_MAGNITUDE and number.adjusted() > -30:
        return None
    if number.is_finite() and number.is_zero():
        return None
    return RowError(line, "out_of_range", {"field": name, "value": _short(number)})


def unfit_problems(row: StageRow) -> list[dict[str, Any]]:
    """Take out of the row what cannot be stored or cannot be a reading, and return it as the
    row's problems ({"code", "params"}): the row is staged as rejected, so that the row checks
    in SQL still run on the rest of it and report everything at once."""
    problems: list[dict[str, Any]] = []
    for name, label, low, high in _INT_FIELDS:
        number = getattr(row, name)
        if number is not None and not low <= number < high:
            setattr(row, name, None)
            problems.append(
                {"code": "out_of_range", "params": {"field": label, "value": _short(number)}}
            )
    for name in ("value", "delta"):
        number = getattr(row, name)
        if number is not None and (error := number_problem(row.line, name, number)):
            setattr(row, name, None)
            problems.append({"code": error.code, "params": error.params})
    return problems


def _short(number: object) -> str:
    """A number for a message: the digits of a huge one are not worth reading."""
    text = str(number)
    return text if len(text) <= 40 else f"{text[:37]}…"


# Row errors kept per batch; beyond this only the count grows.
MAX_STORED_ROW_ERRORS = 1000


def write_items(batch_id: int, items: Iterable[ParsedItem]) -> StageResult:
    """Stream parsed items into the staging tables with binary COPY (two passes are avoided by
    buffering events, which are few, while readings stream)."""
    result = StageResult()
    events: list[StageEvent] = []
    columns = (*STAGE_COLUMNS, ("reject", "jsonb"))
    names = sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        stage_table(batch_id), names
    )
    with connection.cursor() as cursor:
        with cursor.copy(statement.as_string(cursor.connection)) as copy:
            copy.set_types([kind for _, kind in columns])
            last_rejected: int | None = None
            for item in items:
                if isinstance(item, StageRow):
                    problems = unfit_problems(item)
                    copy.write_row(
                        (
                            item.line,
                            item.serial,
                            item.dev_eui,
                            item.register_code,
                            item.kind,
                            item.direction,
                            item.tariff_rate,
                            item.obis,
                            item.series,
                            item.interval_s,
                            item.ts,
                            item.value,
                            item.delta,
                            item.unit,
                            item.duration_s,
                            item.received_at,
                            item.src_flags,
                            item.time_zone,
                            Jsonb(problems) if problems else None,
                        )
                    )
                    result.rows += 1
                elif isinstance(item, StageEvent):
                    events.append(item)
                else:
                    _count_error(result, item, last_rejected)
                    last_rejected = item.line
        if events:
            write_events(cursor, batch_id, events)
            result.events = len(events)
    return result


def _count_error(result: StageResult, error: RowError, last_rejected: int | None) -> None:
    """Count an error, and its row once: a parser yields a row's problems one after another."""
    result.error_count += 1
    if error.line != last_rejected:
        result.rejected_rows += 1
    if len(result.errors) < MAX_STORED_ROW_ERRORS:
        result.errors.append(error)


def write_events(cursor: Any, batch_id: int, events: Iterable[StageEvent]) -> None:
    names = sql.SQL(", ").join(sql.Identifier(name) for name, _ in EVENT_COLUMNS)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        event_table(batch_id), names
    )
    with cursor.copy(statement.as_string(cursor.connection)) as copy:
        copy.set_types([kind for _, kind in EVENT_COLUMNS])
        for event in events:
            copy.write_row(
                (
                    event.line,
                    event.serial,
                    event.dev_eui,
                    event.kind,
                    event.occurred_at,
                    Jsonb(event.data),
                )
            )


def iter_chunks(stream: Any, size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        chunk = stream.read(size)
        if not chunk:
            return
        yield chunk
