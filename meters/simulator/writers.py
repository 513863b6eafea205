"""Writers of the five formats: each streams one unit's window at a time into its file.

The files are what the real sources send: a head-end's CSV export (the documented columns) or
JSON bulk lines, a P1 logger's DSMR 5 telegrams (with their CRC), a Green Button ESPI feed, and
ChirpStack v4 uplink and status events as the HTTP integration stores them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
import zoneinfo
from pathlib import Path
from typing import TextIO

from meters.simulator.engine import Extra, Key, UnitWindow, uplink_delay
from meters.simulator.fleet import MeterSpec, RegisterSpec
from meters.simulator.profiles import SLOT_SECONDS, SLOTS_PER_DAY

AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")  # DSMR telegrams carry Dutch local time
SUFFIX = {"csv": ".csv", "json": ".json", "chirpstack": ".ndjson", "dsmr": ".txt", "espi": ".xml"}


def _fixed(value: int) -> str:
    """Base units as display units with three decimals (Wh -> kWh, L -> m3), exactly."""
    if value < 0:
        return "-" + _fixed(-value)
    return f"{value // 1000}.{value % 1000:03d}"


class Clock:
    """Timestamps in the forms the formats use, cached for the window being written."""

    def __init__(self, time_zone: str) -> None:
        self.tz = zoneinfo.ZoneInfo(time_zone)
        self._local: dict[int, str] = {}
        self._utc: dict[int, str] = {}
        self._dsmr: dict[int, str] = {}

    def local(self, epoch: int) -> str:
        text = self._local.get(epoch)
        if text is None:
            text = dt.datetime.fromtimestamp(epoch, self.tz).isoformat()
            self._local[epoch] = text
        return text

    def utc(self, epoch: int) -> str:
        text = self._utc.get(epoch)
        if text is None:
            text = dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._utc[epoch] = text
        return text

    def dsmr(self, epoch: int) -> str:
        text = self._dsmr.get(epoch)
        if text is None:
            local = dt.datetime.fromtimestamp(epoch, AMSTERDAM)
            text = local.strftime("%y%m%d%H%M%S") + ("S" if local.dst() else "W")
            self._dsmr[epoch] = text
        return text

    def is_low_tariff(self, epoch: int) -> bool:
        local = dt.datetime.fromtimestamp(epoch - SLOT_SECONDS // 2, self.tz)
        return local.weekday() >= 5 or local.hour < 7 or local.hour >= 23


class Writer:
    """One output file of one format."""

    fmt = ""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self.rows = 0
        self.handle: TextIO = path.open("w", encoding="utf-8", newline="")
        self.begin()

    def begin(self) -> None:
        """Write what comes before the first unit."""

    def write(self, window: UnitWindow) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.end()
        self.handle.close()

    def end(self) -> None:
        """Write what comes after the last unit."""


def _extras(window: UnitWindow, *, before: bool) -> list[Extra]:
    return [e for e in window.extras if e.before == before]


def _flags(window: UnitWindow, slot: int, serial: str) -> list[str]:
    return [kind for who, kind in window.events.get(slot, ()) if who == serial]


# --- CSV and JSON bulk ------------------------------------------------------------------------


class CsvWriter(Writer):
    fmt = "csv"
    HEADER = "meter_serial,register,timestamp,value,delta,unit,duration,kind,direction,flags\n"

    def begin(self) -> None:
        self.handle.write(self.HEADER)

    def _row(
        self, meter: MeterSpec, register: RegisterSpec, stamp: str, value: int, flags: list[str]
    ) -> str:
        number = _fixed(value)
        middle = f"{number}," if register.cumulative else f",{number}"
        duration = "" if register.cumulative else str(SLOT_SECONDS)
        return (
            f"{meter.serial},{register.code},{stamp},{middle},{register.display_unit},"
            f"{duration},{meter.kind},{register.direction},{'|'.join(flags)}\n"
        )

    def write(self, window: UnitWindow) -> None:
        lines: list[str] = []
        for extra in _extras(window, before=True):
            lines += self._extra(window, extra)
        stamps = [self.clock.local(window.epoch(s)) for s in range(window.slots)]
        for meter, register in window.unit.registers():
            series = window.series[(meter.serial, register.code)]
            for slot, value in enumerate(series):
                if value is None:
                    continue
                flags = _flags(window, slot, meter.serial) if register.is_main else []
                lines.append(self._row(meter, register, stamps[slot], value, flags))
        for extra in _extras(window, before=False):
            lines += self._extra(window, extra)
        self.rows += len(lines)
        self.handle.write("".join(lines))

    def _extra(self, window: UnitWindow, extra: Extra) -> list[str]:
        stamp = self.clock.local(extra.epoch)
        return [
            self._row(meter, register, stamp, extra.values[(meter.serial, register.code)], [])
            for meter, register in window.unit.registers()
            if (meter.serial, register.code) in extra.values
        ]


class JsonWriter(CsvWriter):
    """JSON bulk, one reading object per line (the form for large files)."""

    fmt = "json"

    def begin(self) -> None:
        pass

    def _row(
        self, meter: MeterSpec, register: RegisterSpec, stamp: str, value: int, flags: list[str]
    ) -> str:
        number = _fixed(value)
        reading = (
            f'"value":{number}'
            if register.cumulative
            else f'"delta":{number},"duration":{SLOT_SECONDS}'
        )
        events = ',"flags":[' + ",".join(f'"{f}"' for f in flags) + "]" if flags else ""
        return (
            f'{{"meter":"{meter.serial}","register":"{register.code}","timestamp":"{stamp}",'
            f'{reading},"unit":"{register.display_unit}","kind":"{meter.kind}",'
            f'"direction":"{register.direction}"{events}}}\n'
        )


# --- ChirpStack -----------------------------------------------------------------------------


def _dedup_id(*parts: object) -> str:
    digest = hashlib.md5("|".join(map(str, parts)).encode()).digest()  # noqa: S324 - an id
    return str(uuid.UUID(bytes=digest, version=4))


class ChirpStackWriter(Writer):
    """Uplink and status events, one per line, as the HTTP integration endpoint stores them."""

    fmt = "chirpstack"

    def _device(self, meter: MeterSpec) -> str:
        profile = f"{meter.kind}-meter"
        return (
            f'{{"tenantName":"Simulation","applicationName":"metering",'
            f'"deviceProfileName":"{profile}","deviceName":"{meter.serial}",'
            f'"devEui":"{meter.dev_eui}"}}'
        )

    def _uplink(
        self,
        meter: MeterSpec,
        register: RegisterSpec,
        epoch: int,
        value: int,
        *,
        variant: str = "up",
        alarms: list[str] | None = None,
    ) -> str:
        delay = uplink_delay(meter.serial, epoch) + (60 if variant == "conflict" else 0)
        received = self.clock.utc(epoch + delay)
        reading = (
            f'{{"register":"{register.code}","value":{_fixed(value)},'
            f'"unit":"{register.display_unit}","time":"{self.clock.utc(epoch)}"}}'
            if register.cumulative
            else f'{{"register":"{register.code}","delta":{_fixed(value)},'
            f'"duration":{SLOT_SECONDS},"unit":"{register.display_unit}",'
            f'"time":"{self.clock.utc(epoch)}"}}'
        )
        alarm = ',"alarms":[' + ",".join(f'"{a}"' for a in alarms) + "]" if alarms else ""
        counter = (epoch // SLOT_SECONDS + (7 if variant == "conflict" else 0)) % 65536
        return (
            f'{{"event":"up","received_at":"{received}","payload":{{'
            f'"deduplicationId":"{_dedup_id(meter.serial, epoch, variant)}",'
            f'"time":"{received}","deviceInfo":{self._device(meter)},"fCnt":{counter},'
            f'"fPort":2,"object":{{"readings":[{reading}]{alarm}}}}}}}\n'
        )

    def write(self, window: UnitWindow) -> None:
        lines: list[str] = []
        meters = {m.serial: m for m in window.unit.meters}
        for extra in _extras(window, before=True):
            lines += self._extra(window, extra)
        for meter, register in window.unit.registers():
            series = window.series[(meter.serial, register.code)]
            for slot, value in enumerate(series):
                if value is None:
                    continue
                alarms = _flags(window, slot, meter.serial) if register.is_main else []
                lines.append(
                    self._uplink(meter, register, window.epoch(slot), value, alarms=alarms)
                )
        for extra in _extras(window, before=False):
            lines += self._extra(window, extra)
        self.rows += len(lines)  # readings; the status reports below are not
        for epoch, serial, battery in window.statuses:
            meter = meters[serial]
            received = self.clock.utc(epoch)
            lines.append(
                f'{{"event":"status","received_at":"{received}","payload":{{'
                f'"deduplicationId":"{_dedup_id(serial, epoch, "status")}","time":"{received}",'
                f'"deviceInfo":{self._device(meter)},"margin":7,"externalPowerSource":false,'
                f'"batteryLevel":{battery}}}}}\n'
            )
        self.handle.write("".join(lines))

    def _extra(self, window: UnitWindow, extra: Extra) -> list[str]:
        # A repeated or resent uplink is the same message again (same deduplicationId).
        variant = "conflict" if extra.kind == "conflict" else "up"
        return [
            self._uplink(meter, register, extra.epoch, extra.values[key], variant=variant)
            for meter, register in window.unit.registers()
            if (key := (meter.serial, register.code)) in extra.values
        ]


# --- DSMR P1 ------------------------------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/ARC, the checksum that ends a DSMR 4/5 telegram."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


class DsmrWriter(Writer):
    """DSMR 5 telegrams as a P1 logger keeps them: every 15 minutes, one after another."""

    fmt = "dsmr"

    def _telegram(self, window: UnitWindow, epoch: int, values: dict[Key, int], power: int) -> str:
        electricity = window.unit.meters[0]
        stamp = self.clock.dsmr(epoch)
        registers = [
            f"{r.obis}({values[(electricity.serial, r.code)] // 1000:06d}."
            f"{values[(electricity.serial, r.code)] % 1000:03d}*kWh)"
            for r in electricity.registers
        ]
        watts = max(0, min(power, 99_999))
        lines = [
            "/SIM5\\2SIMULATOR-P1",
            "",
            "1-3:0.2.8(50)",
            f"0-0:1.0.0({stamp})",
            f"0-0:96.1.1({electricity.serial.encode().hex().upper()})",
            *registers,
            f"0-0:96.14.0({'0001' if self.clock.is_low_tariff(epoch) else '0002'})",
            f"1-0:1.7.0({watts // 1000:02d}.{watts % 1000:03d}*kW)",
            "1-0:2.7.0(00.000*kW)",
        ]
        for channel, meter in enumerate(window.unit.meters[1:], start=1):
            value = values[(meter.serial, meter.registers[0].code)]
            lines += [
                f"0-{channel}:24.1.0(003)",
                f"0-{channel}:96.1.0({meter.serial.encode().hex().upper()})",
                f"0-{channel}:24.2.1({stamp})({value // 1000:05d}.{value % 1000:03d}*m3)",
            ]
        body = "\r\n".join(lines) + "\r\n!"
        self.rows += len(values)
        return f"{body}{crc16(body.encode('ascii')):04X}\r\n"

    def write(self, window: UnitWindow) -> None:
        telegrams: list[str] = []
        keys = list(window.series)
        imports = [
            (window.unit.meters[0].serial, r.code)
            for r in window.unit.meters[0].registers
            if r.direction == "import"
        ]
        for extra in _extras(window, before=True):
            telegrams.append(self._telegram(window, extra.epoch, extra.values, 0))
        previous: int | None = None
        for slot in range(window.slots):
            if window.series[keys[0]][slot] is None:
                previous = None
                continue
            values = {key: window.series[key][slot] for key in keys}
            used = sum(v for k, v in values.items() if k in imports and v is not None)
            power = (used - previous) * 4 if previous is not None else 0
            previous = used
            telegrams.append(
                self._telegram(
                    window,
                    window.epoch(slot),
                    {k: v for k, v in values.items() if v is not None},
                    power,
                )
            )
        for extra in _extras(window, before=False):
            telegrams.append(self._telegram(window, extra.epoch, extra.values, 0))
        self.handle.write("".join(telegrams))


# --- Green Button ESPI ------------------------------------------------------------------------


class EspiWriter(Writer):
    """A Green Button (ESPI) Atom feed: usage points, meter readings, interval blocks."""

    fmt = "espi"
    ROOT = "https://datacustodian.example/DataCustodian/espi/1_1/resource"

    def begin(self) -> None:
        self.points = 0
        feed_id = _dedup_id(self.path.name, "feed")
        self.handle.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:espi="http://naesb.org/espi">\n'
            f"  <id>urn:uuid:{feed_id}</id>\n"
            "  <title>Green Button Usage Feed</title>\n"
            f'  <link rel="self" href="{self.ROOT}/Batch/Subscription/1"/>\n'
        )

    def end(self) -> None:
        self.handle.write("</feed>\n")

    def _entry(self, entry_id: str, links: list[tuple[str, str]], content: str) -> str:
        link_text = "".join(f'<link rel="{rel}" href="{href}"/>' for rel, href in links)
        return (
            f"  <entry><id>urn:uuid:{entry_id}</id>{link_text}"
            f"<content>{content}</content></entry>\n"
        )

    def _block(self, base: str, number: int, readings: list[tuple[int, int]]) -> str:
        start = readings[0][0] - SLOT_SECONDS
        duration = readings[-1][0] - start
        self.rows += len(readings)
        body = "".join(
            f"<espi:IntervalReading><espi:timePeriod><espi:duration>{SLOT_SECONDS}"
            f"</espi:duration><espi:start>{epoch - SLOT_SECONDS}</espi:start></espi:timePeriod>"
            f"<espi:value>{value}</espi:value></espi:IntervalReading>"
            for epoch, value in readings
        )
        content = (
            f"<espi:IntervalBlock><espi:interval><espi:duration>{duration}</espi:duration>"
            f"<espi:start>{start}</espi:start></espi:interval>{body}</espi:IntervalBlock>"
        )
        return self._entry(
            _dedup_id(base, number, readings[0][0], len(readings)),
            [("self", f"{base}/IntervalBlock/{number}"), ("up", f"{base}/IntervalBlock")],
            content,
        )

    def write(self, window: UnitWindow) -> None:
        meter = window.unit.meters[0]
        self.points += 1
        point = f"{self.ROOT}/RetailCustomer/1/UsagePoint/{self.points}"
        parts = [
            self._entry(
                meter.serial,
                [("self", point), ("related", f"{point}/MeterReading")],
                "<espi:UsagePoint><espi:ServiceCategory><espi:kind>0</espi:kind>"
                "</espi:ServiceCategory></espi:UsagePoint>",
            )
        ]
        for number, register in enumerate(meter.registers, start=1):
            reading = f"{point}/MeterReading/{number}"
            reading_type = f"{self.ROOT}/ReadingType/{self.points}-{number}"
            flow = 19 if register.direction == "export" else 1
            parts.append(
                self._entry(
                    _dedup_id(reading),
                    [
                        ("self", reading),
                        ("up", f"{point}/MeterReading"),
                        ("related", f"{reading}/IntervalBlock"),
                        ("related", reading_type),
                    ],
                    "<espi:MeterReading/>",
                )
            )
            parts.append(
                self._entry(
                    _dedup_id(reading_type),
                    [("self", reading_type)],
                    "<espi:ReadingType><espi:accumulationBehaviour>4</espi:accumulationBehaviour>"
                    "<espi:commodity>1</espi:commodity><espi:dataQualifier>12</espi:dataQualifier>"
                    f"<espi:flowDirection>{flow}</espi:flowDirection>"
                    f"<espi:intervalLength>{SLOT_SECONDS}</espi:intervalLength>"
                    "<espi:kind>12</espi:kind><espi:phase>769</espi:phase>"
                    "<espi:powerOfTenMultiplier>0</espi:powerOfTenMultiplier>"
                    "<espi:timeAttribute>0</espi:timeAttribute><espi:uom>72</espi:uom>"
                    "</espi:ReadingType>",
                )
            )
            key = (meter.serial, register.code)
            block = 0
            for extra in _extras(window, before=True):
                if key in extra.values:
                    block += 1
                    parts.append(self._block(reading, block, [(extra.epoch, extra.values[key])]))
            series = window.series[key]
            for day in range(0, window.slots, SLOTS_PER_DAY):
                readings = [
                    (window.epoch(slot), value)
                    for slot in range(day, min(day + SLOTS_PER_DAY, window.slots))
                    if (value := series[slot]) is not None
                ]
                if readings:
                    block += 1
                    parts.append(self._block(reading, block, readings))
            for extra in _extras(window, before=False):
                if key in extra.values:
                    block += 1
                    parts.append(self._block(reading, block, [(extra.epoch, extra.values[key])]))
        self.handle.write("".join(parts))


WRITERS: dict[str, type[Writer]] = {
    "csv": CsvWriter,
    "json": JsonWriter,
    "chirpstack": ChirpStackWriter,
    "dsmr": DsmrWriter,
    "espi": EspiWriter,
}
