"""ChirpStack v4 integration events (JSON mapping of integration.proto), one per line.

A line is either a raw UplinkEvent/StatusEvent, or {"event": "up"|"status", "payload": {...},
"received_at": "..."} as the HTTP endpoint and the MQTT subscriber store them. Devices are
found by devEui. The device codec's decoded `object` carries the readings:

    {"readings": [{"register": "import", "value": 123.456, "unit": "m3", "time": "..."}],
     "alarms": ["leak", "tamper_magnetic"], "valve": "open" | "closed"}

or a single reading as flat keys (`value`, `delta`, `unit`, `register`, `time`). Status events
report the battery level (percent).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any, BinaryIO

from meters.ingest.staging import (
    SOURCE_TAMPER,
    BatchError,
    ParsedItem,
    RowError,
    StageEvent,
    StageRow,
)
from meters.models import ImportBatch

ALARMS = {"tamper_magnetic", "tamper_tilt", "tamper_cover", "leak", "burst", "backflow"}
MAX_LINE_BYTES = 256 * 1024


def _time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def _number(value: Any) -> Decimal | None:
    """A number, possibly not finite (1e999 reads as infinity); None if it is not one."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _parse_int(text: str) -> int | Decimal:
    """A JSON integer; one too long for Python's int() limit (4300 digits, and slow well
    before) stays a Decimal, so that it is a rejected row rather than an exception."""
    return int(text) if len(text) <= 40 else Decimal(text)


def parse(stream: BinaryIO, batch: ImportBatch) -> Iterator[ParsedItem]:
    line = 0
    for raw in stream:
        line += 1
        if len(raw) > MAX_LINE_BYTES:
            raise BatchError(f"Line {line} is longer than {MAX_LINE_BYTES} bytes.")
        if not raw.strip():
            continue
        try:
            message = json.loads(raw, parse_int=_parse_int)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BatchError(f"Line {line} is not JSON: {error}.") from None
        except RecursionError:
            raise BatchError(f"Line {line} is nested too deeply.") from None
        if not isinstance(message, dict):
            raise BatchError(f"Line {line} is not a JSON object.")
        yield from _message(line, message, batch)


def _message(line: int, message: dict[str, Any], batch: ImportBatch) -> Iterator[ParsedItem]:
    payload = message.get("payload") if "payload" in message else message
    if not isinstance(payload, dict):
        yield RowError(line, "chirpstack_not_object")
        return
    event = message.get("event") or ("status" if "batteryLevel" in payload else "up")
    received = _time(message.get("received_at")) or _time(payload.get("time")) or batch.received_at
    device = payload.get("deviceInfo")
    raw_eui = device.get("devEui") if isinstance(device, dict) else None
    dev_eui = raw_eui.strip().upper() or None if isinstance(raw_eui, str) else None
    if dev_eui is None:
        yield RowError(line, "chirpstack_no_dev_eui")
    elif event == "status":
        # The network server's time of the report, not when it reached us (a queue may
        # hold it for hours).
        yield from _status(line, payload, dev_eui, _time(payload.get("time")) or received)
    elif event == "up":
        yield from _uplink(line, payload, dev_eui, received)


def _status(
    line: int, payload: dict[str, Any], dev_eui: str, received: dt.datetime
) -> Iterator[ParsedItem]:
    if payload.get("batteryLevelUnavailable"):
        return
    battery = _number(payload.get("batteryLevel"))
    # A level beyond any percentage is noise (and a huge one would not survive float()).
    if battery is not None and battery.is_finite() and abs(battery) <= 1000:
        yield StageEvent(
            line=line,
            kind="status",
            occurred_at=received,
            dev_eui=dev_eui,
            data={"battery": float(battery), "source": "chirpstack"},
        )


def _uplink(
    line: int, payload: dict[str, Any], dev_eui: str, received: dt.datetime
) -> Iterator[ParsedItem]:
    decoded = payload.get("object")
    if not isinstance(decoded, dict):
        yield RowError(line, "chirpstack_no_object")
        return
    event_time = _time(payload.get("time")) or received
    readings = decoded.get("readings")
    if readings is None and ("value" in decoded or "delta" in decoded):
        readings = [decoded]
    if readings is not None and not isinstance(readings, list):
        yield RowError(line, "chirpstack_readings_not_list")
        readings = None
    raw_alarms = decoded.get("alarms") or []
    if not isinstance(raw_alarms, list):
        yield RowError(line, "chirpstack_alarms_not_list")
        raw_alarms = []
    alarms = [a for a in raw_alarms if isinstance(a, str)]
    flags = SOURCE_TAMPER if any(a.startswith("tamper") for a in alarms) else 0
    for reading in readings or []:
        yield _reading(
            line, reading, dev_eui=dev_eui, event_time=event_time, received=received, flags=flags
        )
    for alarm in alarms:
        if alarm in ALARMS:
            yield StageEvent(
                line=line,
                kind=alarm,
                occurred_at=event_time,
                dev_eui=dev_eui,
                data={"source": "chirpstack", "fCnt": payload.get("fCnt")},
            )
        else:
            yield RowError(line, "chirpstack_unknown_alarm", {"alarm": repr(alarm)})
    valve = decoded.get("valve")
    if valve in ("open", "closed"):
        yield StageEvent(
            line=line,
            kind="status",
            occurred_at=event_time,
            dev_eui=dev_eui,
            data={"valve": valve, "source": "chirpstack"},
        )


def _reading(
    line: int,
    reading: Any,
    *,
    dev_eui: str,
    event_time: dt.datetime,
    received: dt.datetime,
    flags: int,
) -> ParsedItem:
    if not isinstance(reading, dict):
        return RowError(line, "chirpstack_reading_not_object")
    value, delta = _number(reading.get("value")), _number(reading.get("delta"))
    unit = reading.get("unit")
    if (value is None and delta is None) or not isinstance(unit, str):
        return RowError(line, "chirpstack_reading_incomplete")
    duration = reading.get("duration")
    if isinstance(duration, Decimal):
        return RowError(
            line, "out_of_range", {"field": "duration", "value": f"{str(duration)[:37]}…"}
        )
    for name, number in (("value", value), ("delta", delta)):
        # Not finite: staged, it would break the numeric column; finite ones are checked with
        # the rest of the row (meters.ingest.staging.unfit_problems).
        if number is not None and not number.is_finite():
            return RowError(line, "out_of_range", {"field": name, "value": str(number)})
    seconds = duration if isinstance(duration, int) and not isinstance(duration, bool) else None
    return StageRow(
        line=line,
        ts=_time(reading.get("time")) or event_time,
        unit=unit.strip().lower(),
        dev_eui=dev_eui,
        register_code=str(reading["register"])[:32] if reading.get("register") else None,
        value=value,
        delta=delta,
        duration_s=seconds,
        received_at=received,
        src_flags=flags,
    )
