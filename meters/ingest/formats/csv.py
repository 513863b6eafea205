"""CSV: the documented columns, streamed straight into PostgreSQL's COPY parser.

Columns (header row required, any order, names case-insensitive):

    meter_serial  required   the meter's serial number
    register      optional   the register code; empty = the meter's main import register
    timestamp     required   ISO 8601 with an offset: 2026-03-01T00:15:00+01:00 (or Z)
    value         one of     the register's cumulative value
    delta         the two    the consumption of the interval ending at `timestamp`
    unit          required   Wh, kWh, MWh, MJ, GJ, therm, L, m3, ft3, gal
    duration      optional   the interval length in seconds (for `delta`)
    kind          optional   electricity, water, gas or heat (needed to register new meters)
    direction     optional   import (default) or export
    flags         optional   events at this reading, separated by "|": tamper_magnetic,
                             tamper_tilt, tamper_cover, leak, burst, backflow, valve_closed, ...

The file goes to COPY as it is read: PostgreSQL's parser checks the CSV structure and the
UTF-8 encoding and reports the row of the first problem; the rows are then validated as a set:
what is not CSV of readings (a column that is not a number, a timestamp without its offset)
fails the file, while a reading that is well written but cannot be right (too large, negative,
in the future) is a rejected row (meters.ingest.pipeline.resolve).
"""

from __future__ import annotations

import codecs
import re
from typing import Any, BinaryIO

import psycopg
from django.db import DataError, connection
from psycopg import sql

from meters.ingest.staging import BatchError, event_table, raw_csv_table, stage_table
from meters.ingest.units import UNITS

COLUMNS = (
    "meter_serial",
    "register",
    "timestamp",
    "value",
    "delta",
    "unit",
    "duration",
    "kind",
    "direction",
    "flags",
)
REQUIRED = ("meter_serial", "timestamp", "unit")
EVENT_KINDS = (
    "tamper_magnetic",
    "tamper_tilt",
    "tamper_cover",
    "leak",
    "burst",
    "backflow",
    "valve_open",
    "valve_closed",
    "battery_low",
    "power_outage",
)
# A longer line is not meter data: refuse it before PostgreSQL buffers it.
MAX_LINE_BYTES = 64 * 1024
_TS_PATTERN = (
    r"^\s*\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)\s*$"
)
_NUMBER_PATTERN = r"^\s*-?\d{1,15}(\.\d{1,9})?\s*$"


def _read_header(stream: BinaryIO) -> tuple[list[str], bytes]:
    """Return the header's column names and whatever was read past the header line."""
    buffer = b""
    while b"\n" not in buffer:
        chunk = stream.read(65536)
        if not chunk:
            break
        buffer += chunk
        if len(buffer) > MAX_LINE_BYTES:
            raise BatchError("The header line is longer than 65536 bytes: not a CSV of readings.")
    line, _, rest = buffer.partition(b"\n")
    if line.startswith(codecs.BOM_UTF8):
        line = line[len(codecs.BOM_UTF8) :]
    try:
        header = line.decode("utf-8").strip().strip("\r")
    except UnicodeDecodeError:
        raise BatchError("The header line is not UTF-8 text.") from None
    if not header:
        raise BatchError("The file is empty or has no header line.")
    if any(not (c.isprintable() or c == "\t") for c in header):
        raise BatchError(
            "The header line holds control characters: this is not CSV text (is the file "
            "compressed, or not UTF-8?)."
        )
    names = [name.strip().strip('"').lower() for name in header.split(",")]
    unknown = [name[:40] for name in names if name not in COLUMNS]
    if unknown:
        raise BatchError(f"Unknown column(s) {', '.join(unknown)}. Expected: {', '.join(COLUMNS)}.")
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise BatchError(f"Missing required column(s): {', '.join(missing)}.")
    if "value" not in names and "delta" not in names:
        raise BatchError("A value or a delta column is required.")
    if len(set(names)) != len(names):
        raise BatchError("A column appears twice in the header.")
    return names, rest


class _LineGuard:
    """Refuse a line longer than MAX_LINE_BYTES, chunk by chunk, without splitting lines."""

    def __init__(self) -> None:
        self.line = 1  # the header
        self.open_length = 0  # bytes of the current, unfinished line

    def check(self, chunk: bytes) -> None:
        first = chunk.find(b"\n")
        if first == -1:
            self.open_length += len(chunk)
        else:
            longest = self.open_length + first
            last = chunk.rfind(b"\n")
            if last > first:
                inner = chunk[first + 1 : last].split(b"\n")
                longest = max([longest, *map(len, inner)])
            self.line += chunk.count(b"\n")
            self.open_length = len(chunk) - last - 1
            if longest > MAX_LINE_BYTES:
                raise BatchError(
                    f"A line before line {self.line + 1} is longer than {MAX_LINE_BYTES} bytes: "
                    "this is not a CSV of readings."
                )
        if self.open_length > MAX_LINE_BYTES:
            raise BatchError(
                f"Line {self.line + 1} is longer than {MAX_LINE_BYTES} bytes: "
                "this is not a CSV of readings."
            )


def copy_csv(batch_id: int, stream: BinaryIO) -> None:
    """COPY the file into the raw staging table, refusing absurdly long lines.

    :raises BatchError: for a malformed header, an over-long line, or what COPY rejects
        (broken CSV structure, invalid UTF-8), with the row PostgreSQL names.
    """
    names, rest = _read_header(stream)
    raw = raw_csv_table(batch_id)
    columns = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("CREATE TABLE {} (line bigserial, {})")
            .format(raw, columns)
            .as_string(cursor.connection)
        )
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            raw, sql.SQL(", ").join(sql.Identifier(name) for name in names)
        )
        guard = _LineGuard()
        try:
            with cursor.copy(statement.as_string(cursor.connection)) as copy:
                chunk = rest
                while chunk:
                    guard.check(chunk)
                    copy.write(chunk)
                    chunk = stream.read(1 << 20)
        except (DataError, psycopg.errors.DataError) as error:
            raise BatchError(_copy_message(error)) from None


def _copy_message(error: Exception) -> str:
    """Turn COPY's error into a message for people, with the file's line number."""
    cause = error.__cause__ if isinstance(error, DataError) and error.__cause__ else error
    detail = str(cause).strip().splitlines()[0] if str(cause).strip() else "unreadable"
    context = getattr(getattr(cause, "diag", None), "context", None) or ""
    where = ""
    match = re.search(r"line (\d+)", context)
    if match:
        # COPY counts the data rows from 1; the file's header is line 1.
        where = f" (line {int(match.group(1)) + 1})"
    return f"The file could not be read as CSV: {detail}{where}."


def stage_csv(batch_id: int) -> None:
    """Check the raw rows as a set and move them into the typed staging table.

    :raises BatchError: listing the first malformed rows, if there are any.
    """
    raw = raw_csv_table(batch_id)
    units = list(UNITS)
    problems_sql = sql.SQL(
        r"""
        SELECT line + 1, problem FROM (
            SELECT line, CASE
                WHEN coalesce(btrim(meter_serial), '') = '' THEN 'meter_serial is empty'
                WHEN coalesce(timestamp, '') !~ %(ts)s
                    THEN 'timestamp must be ISO 8601 with an offset, such as '
                         '2026-03-01T00:15:00+01:00'
                WHEN coalesce(btrim(value), '') = '' AND coalesce(btrim(delta), '') = ''
                    THEN 'value or delta is required'
                WHEN coalesce(btrim(value), '') <> '' AND value !~ %(num)s
                    THEN 'value is not a number'
                WHEN coalesce(btrim(delta), '') <> '' AND delta !~ %(num)s
                    THEN 'delta is not a number'
                WHEN lower(replace(btrim(coalesce(unit, '')), '^3', '3')) <> ALL(%(units)s)
                    THEN 'unknown unit "' || coalesce(unit, '') || '"'
                WHEN coalesce(btrim(duration), '') <> '' AND duration !~ %(dur)s
                    THEN 'duration must be whole seconds'
                WHEN coalesce(btrim(kind), '') <> ''
                     AND lower(btrim(kind)) NOT IN ('electricity', 'water', 'gas', 'heat')
                    THEN 'unknown kind "' || kind || '"'
                WHEN coalesce(btrim(direction), '') <> ''
                     AND lower(btrim(direction)) NOT IN ('import', 'export')
                    THEN 'direction must be import or export'
                WHEN coalesce(btrim(flags), '') <> '' AND EXISTS (
                        SELECT 1 FROM unnest(string_to_array(lower(flags), '|')) f
                        WHERE btrim(f) <> ALL(%(events)s))
                    THEN 'unknown flag in "' || flags || '"'
            END AS problem
            FROM {raw}
        ) checked
        WHERE problem IS NOT NULL
        ORDER BY line
        """
    ).format(raw=raw)
    params: dict[str, Any] = {
        "ts": _TS_PATTERN,
        "num": _NUMBER_PATTERN,
        "units": units,
        "events": list(EVENT_KINDS),
        "dur": r"^\s*\d{1,7}\s*$",
    }
    with connection.cursor() as cursor:
        cursor.execute(problems_sql.as_string(cursor.connection) + " LIMIT 10", params)
        problems = cursor.fetchall()
        if problems:
            cursor.execute(
                sql.SQL("SELECT count(*) FROM ({}) p")
                .format(problems_sql)
                .as_string(cursor.connection),
                params,
            )
            (total,) = cursor.fetchone()
            listed = "; ".join(f"line {line}: {problem}" for line, problem in problems)
            raise BatchError(
                f"{total} malformed row(s); nothing was imported. {listed}"
                + ("; …" if total > len(problems) else "")
            )
        try:
            cursor.execute(
                sql.SQL(
                    r"""
                    INSERT INTO {stage} (line, serial, register_code, kind, direction, ts, value,
                                         delta, unit, duration_s, received_at, src_flags)
                    SELECT line + 1,
                           btrim(meter_serial),
                           nullif(btrim(register), ''),
                           nullif(lower(btrim(kind)), ''),
                           nullif(lower(btrim(direction)), ''),
                           btrim(timestamp)::timestamptz,
                           nullif(btrim(value), '')::numeric,
                           nullif(btrim(delta), '')::numeric,
                           lower(replace(btrim(unit), '^3', '3')),
                           nullif(btrim(duration), '')::integer,
                           NULL,
                           CASE WHEN lower(coalesce(flags, '')) LIKE '%%tamper%%'
                                THEN %(tamper)s ELSE 0 END
                    FROM {raw}
                    """
                )
                .format(stage=stage_table(batch_id), raw=raw)
                .as_string(cursor.connection),
                {"tamper": 1 << 14},
            )
        except DataError as error:
            raise BatchError(f"A value could not be read: {str(error).splitlines()[0]}.") from None
        cursor.execute(
            sql.SQL(
                r"""
                INSERT INTO {events} (line, serial, kind, occurred_at, data)
                SELECT r.line + 1, btrim(r.meter_serial), btrim(f), btrim(r.timestamp)::timestamptz,
                       '{{"source": "csv"}}'::jsonb
                FROM {raw} r CROSS JOIN LATERAL unnest(string_to_array(lower(r.flags), '|')) f
                WHERE coalesce(btrim(r.flags), '') <> '' AND btrim(f) <> ''
                """
            )
            .format(events=event_table(batch_id), raw=raw)
            .as_string(cursor.connection)
        )
        cursor.execute(sql.SQL("DROP TABLE {}").format(raw).as_string(cursor.connection))
