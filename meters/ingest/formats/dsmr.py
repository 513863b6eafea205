"""DSMR P1 telegrams (dsmr-parser): electricity tariffs 1/2 import and export, and the M-Bus
channels (gas, water, heat) with their own timestamps; valve position and power failures.

A file may hold many telegrams, one after another. Timestamps carry the S/W (summer/winter)
flag and are converted by dsmr-parser; DSMR 2.2 and 3 telegrams have no timestamp for the
electricity registers, so those need the batch's read time (`--read-at`).
"""

from __future__ import annotations

import binascii
import datetime as dt
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, BinaryIO

from dsmr_parser import telegram_specifications as specs
from dsmr_parser.exceptions import InvalidChecksumError, ParseError
from dsmr_parser.parsers import TelegramParser

from meters.ingest.staging import BatchError, ParsedItem, RowError, StageEvent, StageRow
from meters.models import ImportBatch

# Electricity registers: (telegram attribute, register code, direction, tariff rate, OBIS)
ELECTRICITY = (
    ("ELECTRICITY_USED_TARIFF_1", "1.8.1", "import", 1, "1-0:1.8.1"),
    ("ELECTRICITY_USED_TARIFF_2", "1.8.2", "import", 2, "1-0:1.8.2"),
    ("ELECTRICITY_DELIVERED_TARIFF_1", "2.8.1", "export", 1, "1-0:2.8.1"),
    ("ELECTRICITY_DELIVERED_TARIFF_2", "2.8.2", "export", 2, "1-0:2.8.2"),
)
# M-Bus device types (EN 13757-3) -> kind
MBUS_KINDS = {3: "gas", 4: "heat", 6: "water", 7: "water", 12: "heat"}
MAX_TELEGRAM_BYTES = 64 * 1024
EPOCH = dt.datetime(1971, 1, 1, tzinfo=dt.UTC)


def _serial(raw: Any) -> str | None:
    """Equipment identifiers are usually hex-encoded ASCII; decode when they are."""
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    try:
        decoded = binascii.unhexlify(text).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return text[:64]
    return decoded[:64] if decoded.isprintable() and decoded.strip() else text[:64]


def _spec(text: str) -> dict[str, Any]:
    if "0-0:96.1.4(" in text:
        return specs.BELGIUM_FLUVIUS  # type: ignore[no-any-return]
    version = re.search(r"1-3:0\.2\.8\((\d+)\)", text)
    if version and version.group(1).startswith("5"):
        return specs.V5  # type: ignore[no-any-return]
    if version and version.group(1).startswith("4"):
        return specs.V4  # type: ignore[no-any-return]
    if "0-1:24.3.0" in text or "0-0:96.13.1" in text:
        return specs.V3  # type: ignore[no-any-return]
    return specs.V5  # type: ignore[no-any-return]


def split_telegrams(stream: BinaryIO) -> Iterator[tuple[int, str]]:
    """Yield (first line number, telegram text) for each telegram in the stream."""
    line_number = 0
    current: list[str] = []
    start = 0
    size = 0
    for raw_line in stream:
        line_number += 1
        line = raw_line.decode("latin-1")
        if line.startswith("/"):
            if current:
                yield start, "".join(current)
            current, start, size = [line], line_number, len(raw_line)
            continue
        if not current:
            if line.strip():
                raise BatchError(f"Line {line_number}: text before the first telegram header '/'.")
            continue
        current.append(line)
        size += len(raw_line)
        if size > MAX_TELEGRAM_BYTES:
            raise BatchError(f"The telegram starting at line {start} is too long.")
        if line.startswith("!"):
            yield start, "".join(current)
            current = []
    if current:
        yield start, "".join(current)


def parse(stream: BinaryIO, batch: ImportBatch) -> Iterator[ParsedItem]:
    count = 0
    for line, text in split_telegrams(stream):
        count += 1
        try:
            telegram = TelegramParser(_spec(text)).parse(text, throw_ex=True)
        except (ParseError, InvalidChecksumError) as error:
            yield RowError(line, "dsmr_unreadable", {"detail": _printable(error)})
            continue
        except (ValueError, IndexError, TypeError, ArithmeticError) as error:
            # dsmr-parser reports some malformed lines (bad hex, a value with two units, a
            # missing field) with Python's own exceptions rather than ParseError.
            yield RowError(line, "dsmr_unreadable", {"detail": _printable(error)})
            continue
        yield from _telegram_items(line, telegram, batch)
    if count == 0:
        raise BatchError("The file holds no DSMR telegram (they start with '/').")


def _printable(error: Exception) -> str:
    """The parser's message, without the control bytes a broken line may carry."""
    # dsmr-parser's ParseError carries ("Invalid '%s' line for '%s'", line, parser).
    parts = [str(a) for a in error.args if isinstance(a, str) and "%s" not in a]
    text = "invalid line " + " ".join(parts) if parts else str(error)
    clean = "".join(c if c.isprintable() else "?" for c in text.replace("\r\n", "").strip())
    return clean[:200] or type(error).__name__


def _value(obj: Any) -> Decimal | None:
    value = getattr(obj, "value", None)
    return value if isinstance(value, Decimal) else None


def _telegram_items(line: int, telegram: Any, batch: ImportBatch) -> Iterator[ParsedItem]:
    stamp = getattr(telegram, "P1_MESSAGE_TIMESTAMP", None)
    ts: dt.datetime | None = stamp.value if stamp is not None else None
    if ts is None:
        ts = batch.read_at
    identifier = getattr(telegram, "EQUIPMENT_IDENTIFIER", None) or getattr(
        telegram, "BELGIUM_EQUIPMENT_IDENTIFIER", None
    )
    serial = _serial(identifier.value if identifier is not None else None)
    readings = [
        (code, direction, rate, obis, _value(getattr(telegram, attr, None)))
        for attr, code, direction, rate, obis in ELECTRICITY
    ]
    if any(value is not None for *_, value in readings):
        if serial is None:
            yield RowError(line, "dsmr_no_identifier")
        elif ts is None:
            yield RowError(line, "dsmr_no_timestamp")
        else:
            for code, direction, rate, obis, value in readings:
                if value is None:
                    continue
                yield StageRow(
                    line=line,
                    ts=ts,
                    unit="kwh",
                    serial=serial,
                    register_code=code,
                    value=value,
                    kind="electricity",
                    direction=direction,
                    tariff_rate=rate,
                    obis=obis,
                    series="register",
                )
            yield from _power_failures(line, serial, telegram)
    for device in getattr(telegram, "MBUS_DEVICES", []) or []:
        yield from _mbus_items(line, device)


PLAUSIBLE_SINCE = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)
MAX_OUTAGE_SECONDS = 366 * 24 * 3600


def _power_failures(line: int, serial: str, telegram: Any) -> Iterator[ParsedItem]:
    """Long power failures from the telegram's log (end time and duration of each)."""
    log = getattr(telegram, "POWER_EVENT_FAILURE_LOG", None)
    for entry in getattr(log, "buffer", None) or []:
        ended = getattr(entry, "datetime", None)
        duration = getattr(entry, "value", None)
        if not isinstance(ended, dt.datetime) or not isinstance(duration, int | Decimal):
            continue
        if ended < PLAUSIBLE_SINCE or not 0 <= duration <= MAX_OUTAGE_SECONDS:
            # Meters fill unused log slots with their clock's default and junk durations.
            yield RowError(
                line,
                "dsmr_placeholder_outage",
                {"ended": f"{ended:%Y-%m-%d}", "duration": str(duration)},
            )
            continue
        yield StageEvent(
            line=line,
            kind="power_outage",
            occurred_at=ended,
            serial=serial,
            data={"source": "dsmr", "duration_s": int(duration)},
        )


def _mbus_items(line: int, device: Any) -> Iterator[ParsedItem]:
    fields = dict(device)
    kind_obj = fields.get("MBUS_DEVICE_TYPE") or fields.get("DEVICE_TYPE")
    id_obj = fields.get("MBUS_EQUIPMENT_IDENTIFIER") or fields.get("EQUIPMENT_IDENTIFIER_GAS")
    reading = (
        fields.get("MBUS_METER_READING")
        or fields.get("HOURLY_GAS_METER_READING")
        or fields.get("GAS_METER_READING")
    )
    valve = fields.get("MBUS_VALVE_POSITION") or fields.get("VALVE_POSITION_GAS")
    try:
        device_type = int(str(kind_obj.value)) if kind_obj is not None else 3
    except ValueError:
        device_type = 3
    kind = MBUS_KINDS.get(device_type)
    serial = _serial(id_obj.value if id_obj is not None else None)
    channel = device.channel_id
    if reading is None:
        return
    value = _value(reading)
    when = getattr(reading, "datetime", None)
    if serial is None or value is None or not isinstance(when, dt.datetime) or when < EPOCH:
        yield RowError(line, "dsmr_mbus_placeholder", {"channel": str(channel)})
        return
    if kind is None:
        yield RowError(
            line, "dsmr_mbus_unknown_type", {"channel": str(channel), "type": str(device_type)}
        )
        return
    unit = (reading.unit or "m3").lower()
    yield StageRow(
        line=line,
        ts=when,
        unit=unit,
        serial=serial,
        register_code="24.2.1",
        value=value,
        kind=kind,
        direction="import",
        obis=f"0-{channel}:24.2.1",
        series="register",
    )
    if valve is not None and str(valve.value).strip() == "0":
        yield StageEvent(
            line=line,
            kind="valve_closed",
            occurred_at=when,
            serial=serial,
            data={"source": "dsmr"},
        )
