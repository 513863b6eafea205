"""The JSON bulk format of head-end systems (POST /api/v1/readings/ or a .json file):

    {"readings": [{"meter": "SERIAL", "register": "import", "timestamp": "2026-03-01T00:15:00Z",
                   "value": 1234.5, "delta": 0.25, "unit": "kWh", "duration": 900,
                   "flags": ["tamper_magnetic"]}, ...]}

Fields mean what the CSV columns of the same names mean. Newline-delimited JSON (one reading
object per line) is accepted too, for files too large to hold in one document.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any, BinaryIO

from meters.ingest.formats.csv import EVENT_KINDS
from meters.ingest.staging import (
    SOURCE_TAMPER,
    BatchError,
    ParsedItem,
    RowError,
    StageEvent,
    StageRow,
    number_problem,
)
from meters.models import ImportBatch


def _parse_int(text: str) -> int | Decimal:
    """A JSON integer; one too long for Python's int() limit (4300 digits, and slow well
    before) stays a Decimal, so that it is a rejected row rather than an exception."""
    return int(text) if len(text) <= 40 else Decimal(text)


def _records(stream: BinaryIO) -> Iterator[tuple[int, Any]]:
    first = stream.read(1)
    while first.isspace():
        first = stream.read(1)
    if not first:
        raise BatchError("The body is empty: there are no readings in it.")
    stream.seek(stream.tell() - 1)
    if first == b"{":
        head = stream.read(64)
        stream.seek(stream.tell() - len(head))
        if b'"readings"' in head or head.lstrip().startswith(b'{"readings'):
            try:
                document = json.load(stream, parse_int=_parse_int)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise BatchError(f"The body is not valid JSON: {error}.") from None
            except RecursionError:
                raise BatchError("The body is not usable JSON: it is nested too deeply.") from None
            readings = document.get("readings") if isinstance(document, dict) else None
            if not isinstance(readings, list):
                raise BatchError('Expected {"readings": [...]}.')
            yield from enumerate(readings, start=1)
            return
    for number, raw in enumerate(stream, start=1):
        if raw.strip():
            try:
                yield number, json.loads(raw, parse_int=_parse_int)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise BatchError(f"Line {number} is not JSON: {error}.") from None
            except RecursionError:
                raise BatchError(f"Line {number} is nested too deeply.") from None


def parse(stream: BinaryIO, batch: ImportBatch) -> Iterator[ParsedItem]:
    for number, record in _records(stream):
        if not isinstance(record, dict):
            raise BatchError(f"Reading {number} is not an object.")
        yield from _reading(number, record)


def _decimal(record: dict[str, Any], key: str) -> Decimal | None:
    """The number under `key`; one that is not finite (1e999 reads as infinity) is returned
    as it is, for the row to be rejected as out of range.

    :raises BatchError: if it is not a number at all (the sender's format is wrong).
    """
    raw = record.get(key)
    if raw is None:
        return None
    if isinstance(raw, Decimal):
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise BatchError(f"{key} must be a number, got {str(raw)[:40]!r}.")
    try:
        return Decimal(str(raw))
    except InvalidOperation:
        raise BatchError(f"{key} must be a number, got {str(raw)[:40]!r}.") from None


def _reading(number: int, record: dict[str, Any]) -> Iterator[ParsedItem]:
    meter = record.get("meter")
    stamp = record.get("timestamp")
    unit = record.get("unit")
    if not isinstance(meter, str) or not meter.strip():
        raise BatchError(f"Reading {number}: meter is required.")
    if not isinstance(unit, str):
        raise BatchError(f"Reading {number}: unit is required.")
    try:
        ts = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        raise BatchError(f"Reading {number}: timestamp {stamp!r} is not ISO 8601.") from None
    if ts.tzinfo is None:
        raise BatchError(f"Reading {number}: the timestamp needs an offset.")
    value, delta = _decimal(record, "value"), _decimal(record, "delta")
    if value is None and delta is None:
        raise BatchError(f"Reading {number}: value or delta is required.")
    duration = record.get("duration")
    # What cannot be a reading is a rejected row; the rest of the batch goes on.
    problems = [
        problem
        for name, figure in (("value", value), ("delta", delta))
        if figure is not None and not figure.is_finite()
        if (problem := number_problem(number, name, figure)) is not None
    ]
    if isinstance(duration, Decimal):
        problems.append(
            RowError(
                number, "out_of_range", {"field": "duration", "value": f"{str(duration)[:37]}…"}
            )
        )
    if problems:
        yield from problems
        return
    flags = record.get("flags") or []
    if not isinstance(flags, list) or any(f not in EVENT_KINDS for f in flags):
        yield RowError(number, "json_unknown_flags", {"flags": repr(flags)})
        flags = [f for f in flags if f in EVENT_KINDS] if isinstance(flags, list) else []
    yield StageRow(
        line=number,
        ts=ts,
        unit=unit.strip().lower(),
        serial=meter.strip()[:64],
        register_code=str(record["register"])[:32] if record.get("register") else None,
        value=value,
        delta=delta,
        duration_s=duration
        if isinstance(duration, int) and not isinstance(duration, bool)
        else None,
        src_flags=SOURCE_TAMPER if any(f.startswith("tamper") for f in flags) else 0,
        direction=record.get("direction")
        if record.get("direction") in ("import", "export")
        else None,
        kind=record.get("kind")
        if record.get("kind") in ("electricity", "water", "gas", "heat")
        else None,
    )
    for flag in flags:
        yield StageEvent(
            line=number,
            kind=flag,
            occurred_at=ts,
            serial=meter.strip()[:64],
            data={"source": "json"},
        )
