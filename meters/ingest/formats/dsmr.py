"""DSMR P1 and D0 (IEC 62056-21) telegrams of every meter family dsmr-parser knows: the energy
registers (totals and tariffs 1-4, active and reactive, in the units the telegram states), the
M-Bus channels (gas, water, heat) with their own timestamps and OBIS codes, valve position and
power failures.

A file may hold many telegrams, one after another; a gateway may add lines of its own after a
telegram's end (`!`), which are skipped. Each telegram is read with the specification its own
identification line and objects name (or the one the batch forces, `ImportBatch.dsmr_spec`).

Read time: the telegram's timestamp (its S/W flag and the meter's country give the offset);
for telegrams without one (DSMR 2.2/3, EasyMeter Q3D, D0 gateways) the sender's `--read-at`, or
for live sources (MQTT, ChirpStack, API) the head-end's delivery time; the batch records which
(`read_time_source`). A telegram without an equipment identifier (Sagemcom T210-D-r, Sweden)
belongs to the batch's meter (`ImportBatch.meter_serial`, `--meter`).

Units are never assumed: each value keeps the unit its line states (Wh, kWh, MWh, varh, kvarh,
m3, GJ) and is converted exactly to the register's base unit by the pipeline; a value without a
unit, or in a unit that does not fit its register, is a row error.
"""

from __future__ import annotations

import binascii
import copy
import datetime as dt
import re
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, BinaryIO

from dsmr_parser import telegram_specifications as specs
from dsmr_parser.exceptions import InvalidChecksumError, ParseError
from dsmr_parser.parsers import TelegramParser

from meters.ingest.staging import BatchError, ParsedItem, RowError, StageEvent, StageRow
from meters.ingest.units import UNITS, normalise_unit
from meters.models import ImportBatch, RegisterDirection


@dataclass(frozen=True, slots=True)
class Spec:
    """One telegram specification of dsmr-parser, as plain text, and the meter's country."""

    name: str
    objects: dict[str, Any]
    zone: str


def _plain(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec for telegrams already decrypted: gateways pass Sagemcom and Smarty (MSN)
    telegrams on as text, which the cipher-frame path of dsmr-parser would take for hex."""
    if not spec.get("general_global_cipher"):
        return spec
    plain = copy.copy(spec)
    plain["general_global_cipher"] = False
    return plain


NL, BE, LU = "Europe/Amsterdam", "Europe/Brussels", "Europe/Luxembourg"
# Every telegram specification the pinned dsmr-parser defines (test_dsmr_meters checks that
# none is missing), with the zone of the country its meters are read in.
SPECS: dict[str, Spec] = {
    name: Spec(name, _plain(getattr(specs, name)), zone)
    for name, zone in (
        ("V2_2", NL),
        ("V3", NL),
        ("V4", NL),
        ("V5", NL),
        ("BELGIUM_FLUVIUS", BE),
        ("LUXEMBOURG_SMARTY", LU),
        ("MSN", LU),
        ("SWEDEN", "Europe/Stockholm"),
        ("Q3D", "Europe/Berlin"),  # EasyMeter Q3D, Germany
        ("SAGEMCOM_T210_D_R", "Europe/Vienna"),
        ("AUSTRIA_ENERGIENETZE_STEIERMARK", "Europe/Vienna"),
        ("ISKRA_IE", "Europe/Dublin"),
        ("EON_HUNGARY", "Europe/Budapest"),
    )
}
SPEC_CHOICES = tuple(SPECS)

# Energy registers: telegram attribute -> (register code, direction, tariff rate, base unit).
# Totals (x.8.0) are summed only when no tariff register of their direction sits beside them.
TOTALS = {"1.8.0": "import", "2.8.0": "export"}
ENERGY: dict[str, tuple[str, str, int | None, str]] = {
    "ELECTRICITY_IMPORTED_TOTAL": ("1.8.0", "import", None, "Wh"),
    "ELECTRICITY_USED_TARIFF_1": ("1.8.1", "import", 1, "Wh"),
    "ELECTRICITY_USED_TARIFF_2": ("1.8.2", "import", 2, "Wh"),
    "ELECTRICITY_USED_TARIFF_3": ("1.8.3", "import", 3, "Wh"),
    "ELECTRICITY_USED_TARIFF_4": ("1.8.4", "import", 4, "Wh"),
    "ELECTRICITY_EXPORTED_TOTAL": ("2.8.0", "export", None, "Wh"),
    "ELECTRICITY_DELIVERED_TARIFF_1": ("2.8.1", "export", 1, "Wh"),
    "ELECTRICITY_DELIVERED_TARIFF_2": ("2.8.2", "export", 2, "Wh"),
    "ELECTRICITY_DELIVERED_TARIFF_3": ("2.8.3", "export", 3, "Wh"),
    "ELECTRICITY_DELIVERED_TARIFF_4": ("2.8.4", "export", 4, "Wh"),
    "ELECTRICITY_REACTIVE_IMPORTED_TOTAL": ("3.8.0", "reactive_import", None, "varh"),
    "ELECTRICITY_REACTIVE_IMPORTED_TARIFF_1": ("3.8.1", "reactive_import", 1, "varh"),
    "ELECTRICITY_REACTIVE_IMPORTED_TARIFF_2": ("3.8.2", "reactive_import", 2, "varh"),
    "ELECTRICITY_REACTIVE_EXPORTED_TOTAL": ("4.8.0", "reactive_export", None, "varh"),
    "ELECTRICITY_REACTIVE_EXPORTED_TARIFF_1": ("4.8.1", "reactive_export", 1, "varh"),
    "ELECTRICITY_REACTIVE_EXPORTED_TARIFF_2": ("4.8.2", "reactive_export", 2, "varh"),
    # Reactive energy per quadrant: QI and QII are R+ (import), QIII and QIV are R- (export).
    "ELECTRICITY_REACTIVE_TOTAL_Q1": ("5.8.0", "reactive_import", None, "varh"),
    "ELECTRICITY_REACTIVE_TOTAL_Q2": ("6.8.0", "reactive_import", None, "varh"),
    "ELECTRICITY_REACTIVE_TOTAL_Q3": ("7.8.0", "reactive_export", None, "varh"),
    "ELECTRICITY_REACTIVE_TOTAL_Q4": ("8.8.0", "reactive_export", None, "varh"),
}
# M-Bus device types (EN 13757-3) -> kind
MBUS_KINDS = {3: "gas", 4: "heat", 6: "water", 7: "water", 12: "heat"}
# Sources whose batch time is the head-end's delivery time of the telegram.
LIVE_SOURCES = {ImportBatch.Source.MQTT, ImportBatch.Source.CHIRPSTACK, ImportBatch.Source.API}
MAX_TELEGRAM_BYTES = 64 * 1024
EPOCH = dt.datetime(1971, 1, 1, tzinfo=dt.UTC)
# dsmr-parser reads every timestamp as Dutch local time (value_types._SYSTEM_TZ).
PARSER_ZONE = zoneinfo.ZoneInfo("Europe/Amsterdam")

_LINE = re.MULTILINE


def _has(text: str, obis: str) -> bool:
    """Whether the telegram has a line for `obis` ("C.D.E", any channel, any '*255' suffix)."""
    pattern = r"^\d-\d:" + re.escape(obis) + r"(\*\d+)?\("
    return re.search(pattern, text, _LINE) is not None


def detect_spec(text: str) -> Spec:
    """The specification a telegram's identification line and objects name."""
    return SPECS[_spec_name(text, text.split("\n", 1)[0])]


def _spec_name(text: str, header: str) -> str:
    """The first rule that fits, from the most specific objects to the DSMR version line."""
    version = re.search(r"^1-3:0\.2\.8\((\d+)\)", text, _LINE)
    rules: list[tuple[bool, Callable[[], str]]] = [
        (_has(text, "96.1.4"), lambda: "BELGIUM_FLUVIUS"),
        (
            _has(text, "0.0.0") or _has(text, "96.1.255") or header.startswith("/ESY"),
            lambda: "Q3D",
        ),
        (_has(text, "42.0.0"), lambda: _luxembourg_or_hungary(text)),
        (re.search(r"^0-0:96\.1\.0\(", text, _LINE) is not None, lambda: "ISKRA_IE"),
        (
            not _has(text, "96.1.1") and _has(text, "1.8.0"),
            # Sagemcom T210-D-r has tariff registers beside its totals; Swedish meters do not.
            lambda: (
                "SAGEMCOM_T210_D_R"
                if any(_has(text, c) for c in ("1.8.1", "3.8.1", "4.8.1"))
                else "SWEDEN"
            ),
        ),
        (version is not None, lambda: "V4" if version and version[1].startswith("4") else "V5"),
        # DSMR 2.2 and 3 (no timestamp) share one specification in dsmr-parser.
        (not _has(text, "1.0.0"), lambda: "V3" if _has(text, "96.13.1") else "V2_2"),
    ]
    return next((pick() for applies, pick in rules if applies), "V5")


def _luxembourg_or_hungary(text: str) -> str:
    """Both name the meter on 0-0:42.0.0; E.ON's have four tariffs and reactive quadrants."""
    eon = any(_has(text, c) for c in ("1.8.3", "1.8.4", "5.8.0", "8.8.0", "15.8.0", "14.7.0"))
    if eon or not _has(text, "96.1.1"):
        return "EON_HUNGARY"
    return "MSN" if _has(text, "3.8.0") or _has(text, "9.7.0") else "LUXEMBOURG_SMARTY"


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


def split_telegrams(stream: BinaryIO) -> Iterator[tuple[int, str]]:
    """Yield (first line number, telegram text) for each telegram in the stream.

    Lines between a telegram's end (`!`) and the next header are a gateway's own (status,
    timestamps, separators) and are skipped; text before the first header is not a DSMR file.
    """
    line_number = 0
    current: list[str] = []
    start = 0
    size = 0
    seen_one = False
    for raw_line in stream:
        line_number += 1
        line = raw_line.decode("latin-1")
        if line.startswith("/"):
            if current:
                yield start, "".join(current)
            current, start, size = [line], line_number, len(raw_line)
            seen_one = True
            continue
        if not current:
            if line.strip() and not seen_one:
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


def _crlf(text: str) -> str:
    """dsmr-parser's line patterns need CR LF; a telegram stored with bare LF gets them back."""
    return text if "\r\n" in text else text.replace("\n", "\r\n")


def parse(stream: BinaryIO, batch: ImportBatch) -> Iterator[ParsedItem]:
    count = 0
    forced = SPECS.get(batch.dsmr_spec) if batch.dsmr_spec else None
    for line, raw in split_telegrams(stream):
        count += 1
        text = _crlf(raw)
        spec = forced or detect_spec(text)
        try:
            telegram = TelegramParser(spec.objects).parse(text, throw_ex=True)
        except InvalidChecksumError as error:
            params = {"spec": spec.name, "detail": _printable(error)}
            yield RowError(line, "dsmr_bad_checksum", params)
            continue
        except ParseError as error:
            if "CRC validation" in str(error):
                yield RowError(line, "dsmr_no_checksum", {"spec": spec.name})
            else:
                yield RowError(line, "dsmr_unreadable", {"detail": _printable(error)})
            continue
        except (ValueError, IndexError, TypeError, ArithmeticError) as error:
            # dsmr-parser reports some malformed lines (bad hex, a value with two units, a
            # missing field) with Python's own exceptions rather than ParseError.
            yield RowError(line, "dsmr_unreadable", {"detail": _printable(error)})
            continue
        yield from _telegram_items(line, text, telegram, spec, batch)
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


def _rezone(at: Any, zone: zoneinfo.ZoneInfo) -> dt.datetime | None:
    """A timestamp dsmr-parser read as Dutch time, read again as the meter's own local time
    (same wall clock, same S/W flag): the two differ for Ireland."""
    if not isinstance(at, dt.datetime):
        return None
    local = at.astimezone(PARSER_ZONE)
    summer = bool(local.dst())
    again = local.replace(tzinfo=zone, fold=0 if summer else 1)
    return again.astimezone(dt.UTC)


def _identifier(text: str, telegram: Any) -> str | None:
    """The electricity meter's own identifier, by the first of the lines meters use for it."""
    for name in ("EQUIPMENT_IDENTIFIER", "BELGIUM_EQUIPMENT_IDENTIFIER"):
        obj = getattr(telegram, name, None)
        if obj is not None and serial_of(obj):
            return serial_of(obj)
    # 0-0:96.1.0 is the meter's serial in Ireland and Hungary (0-n:96.1.0 are M-Bus devices).
    own = re.search(r"^0-0:96\.1\.0\(([^)]*)\)", text, _LINE)
    if own and _serial(own.group(1)):
        return _serial(own.group(1))
    for name in (
        "LUXEMBOURG_EQUIPMENT_IDENTIFIER",
        "Q3D_EQUIPMENT_SERIALNUMBER",
        "Q3D_EQUIPMENT_IDENTIFIER",
    ):
        obj = getattr(telegram, name, None)
        if obj is not None and serial_of(obj):
            return serial_of(obj)
    return None


def serial_of(obj: Any) -> str | None:
    return _serial(getattr(obj, "value", None))


def _read_time(
    telegram: Any, zone: zoneinfo.ZoneInfo, batch: ImportBatch
) -> tuple[dt.datetime | None, str]:
    """The electricity registers' read time and where it came from."""
    stamp = getattr(telegram, "P1_MESSAGE_TIMESTAMP", None)
    at = _rezone(stamp.value, zone) if stamp is not None else None
    if at is not None:
        return at, "telegram"
    if batch.read_at is not None:
        return batch.read_at, "read_at"
    if batch.source in LIVE_SOURCES:
        return batch.received_at, "received_at"
    return None, ""


def _telegram_items(
    line: int, text: str, telegram: Any, spec: Spec, batch: ImportBatch
) -> Iterator[ParsedItem]:
    zone = zoneinfo.ZoneInfo(spec.zone)
    live = batch.source in LIVE_SOURCES
    ts, source = _read_time(telegram, zone, batch)
    serial = _identifier(text, telegram) or (batch.meter_serial or None)
    found = [(attr, obj) for attr in ENERGY if (obj := getattr(telegram, attr, None)) is not None]
    if found:
        if serial is None:
            yield RowError(line, "dsmr_no_identifier")
        elif ts is None:
            yield RowError(line, "dsmr_no_timestamp")
        else:
            if source in ("read_at", "received_at") and not batch.read_time_source:
                batch.read_time_source = source
            codes = {ENERGY[attr][0] for attr, _ in found}
            for attr, obj in found:
                yield from _energy_row(
                    line,
                    obj=obj,
                    attr=attr,
                    codes=codes,
                    serial=serial,
                    ts=ts,
                    spec=spec,
                    live=live,
                    batch=batch,
                )
            yield from _power_failures(line, serial, telegram, zone)
    for device in getattr(telegram, "MBUS_DEVICES", []) or []:
        yield from _mbus_items(line, text, device, spec, zone)


def _energy_row(
    line: int,
    *,
    obj: Any,
    attr: str,
    codes: set[str],
    serial: str,
    ts: dt.datetime,
    spec: Spec,
    live: bool,
    batch: ImportBatch,
) -> Iterator[ParsedItem]:
    code, direction, rate, base = ENERGY[attr]
    value = _value(obj)
    stated = getattr(obj, "unit", None)
    if value is None:
        yield RowError(line, "dsmr_no_value", {"code": code})
        return
    if not stated:
        yield RowError(line, "dsmr_no_unit", {"code": code})
        return
    unit = normalise_unit(str(stated))
    known = UNITS.get(unit)
    if known is None or known[0] != base:
        yield RowError(line, "dsmr_wrong_unit", {"code": code, "unit": str(stated), "base": base})
        return
    if code in TOTALS and any(c.startswith(code[:4]) and c != code for c in codes):
        # 1.8.0 beside 1.8.1/1.8.2 is their sum: stored, but summed once only (the tariffs).
        total = {"import": RegisterDirection.IMPORT_TOTAL, "export": RegisterDirection.EXPORT_TOTAL}
        direction = total[direction]
    channel = getattr(obj, "obis_id_code", (1, 0))
    yield StageRow(
        line=line,
        ts=ts,
        unit=unit,
        serial=serial,
        register_code=code,
        value=value,
        kind="electricity",
        direction=str(direction),
        tariff_rate=rate,
        obis=f"{channel[0]}-{channel[1]}:{code}",
        series="register",
        received_at=batch.received_at if live else None,
        time_zone=spec.zone,
    )


PLAUSIBLE_SINCE = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)
MAX_OUTAGE_SECONDS = 366 * 24 * 3600


def _power_failures(
    line: int, serial: str, telegram: Any, zone: zoneinfo.ZoneInfo
) -> Iterator[ParsedItem]:
    """Long power failures from the telegram's log (end time and duration of each)."""
    log = getattr(telegram, "POWER_EVENT_FAILURE_LOG", None)
    for entry in getattr(log, "buffer", None) or []:
        ended = _rezone(getattr(entry, "datetime", None), zone)
        duration = getattr(entry, "value", None)
        if ended is None or not isinstance(duration, int | Decimal):
            continue
        if ended < PLAUSIBLE_SINCE or not 0 <= duration <= MAX_OUTAGE_SECONDS:
            # Meters fill unused log slots with their clock's default and junk durations: an
            # empty slot, not an outage and not a rejected row (the telegram's readings are
            # fine, and a batch of them must end "done").
            continue
        yield StageEvent(
            line=line,
            kind="power_outage",
            occurred_at=ended,
            serial=serial,
            data={"source": "dsmr", "duration_s": int(duration)},
        )


def _mbus_code(text: str, channel: int, reading: Any) -> str:
    """The OBIS code of the channel's reading as the telegram writes it: 24.2.1 (temperature
    corrected, NL) or 24.2.3 (not corrected, BE); DSMR 2.2/3 name it in their 24.3.0 line."""
    values = getattr(reading, "values", [])
    if len(values) > 4 and isinstance(values[4].get("value"), str):
        named = re.search(r":(24\.2\.\d)$", values[4]["value"])
        if named:
            return named.group(1)
    found = re.search(rf"^\d-{channel}:(24\.2\.[13])\(", text, _LINE)
    return found.group(1) if found else "24.2.1"


def _mbus_items(
    line: int,
    text: str,
    device: Any,
    spec: Spec,
    zone: zoneinfo.ZoneInfo,
) -> Iterator[ParsedItem]:
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
    when = _rezone(getattr(reading, "datetime", None), zone)
    if serial is None or value is None or when is None or when < EPOCH:
        yield RowError(line, "dsmr_mbus_placeholder", {"channel": str(channel)})
        return
    if kind is None:
        yield RowError(
            line, "dsmr_mbus_unknown_type", {"channel": str(channel), "type": str(device_type)}
        )
        return
    stated = reading.unit
    if not stated:
        yield RowError(line, "dsmr_no_unit", {"code": f"0-{channel}:24.2"})
        return
    unit = normalise_unit(str(stated))
    base = UNITS.get(unit, ("", Decimal(0)))[0]
    if base not in ("L", "Wh"):
        yield RowError(
            line, "dsmr_wrong_unit", {"code": f"0-{channel}:24.2", "unit": str(stated), "base": "L"}
        )
        return
    code = _mbus_code(text, channel, reading)
    yield StageRow(
        line=line,
        ts=when,
        unit=unit,
        serial=serial,
        register_code=code,
        value=value,
        kind=kind,
        direction="import",
        obis=f"0-{channel}:{code}",
        series="register",
        # No received_at: an M-Bus value is captured hourly, long before the telegram is sent.
        time_zone=spec.zone,
    )
    if valve is not None and str(valve.value).strip() == "0":
        yield StageEvent(
            line=line,
            kind="valve_closed",
            occurred_at=when,
            serial=serial,
            data={"source": "dsmr"},
        )
