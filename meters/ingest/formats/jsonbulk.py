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
)
from meters.models import ImportBatch


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
                document = json.load(stream)
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
                yield number, json.loads(raw)
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
    raw = record.get(key)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise BatchError(f"{key} must be a number, got {raw!r}.")
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise BatchError(f"{key} must be a number, got {raw!r}.") from None
    if not value.is_finite():
        raise BatchError(f"{key} must be a finite number.")
    return value


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
    flags = record.get("flags") or []
    if not isinstance(flags, list) or any(f not in EVENT_KINDS for f in flags):
        yield RowError(number, "json_unknown_flags", {"flags": repr(flags)})
        flags = [f for f in flags if f in EVENT_KINDS] if isinstance(flags, list) else []
    duration = record.get("duration")
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
