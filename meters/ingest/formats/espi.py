"""Green Button (NAESB ESPI) Atom feeds, parsed with defusedxml.

Two streaming passes over the file: the first collects the small entries (UsagePoint,
MeterReading, ReadingType) and how they link, the second turns every IntervalReading into a row.
Values are scaled by powerOfTenMultiplier and converted from the ReadingType's uom. The
UsagePoint's Atom id is the meter's serial. DTDs, entity definitions and external references
are refused (XXE, billion laughs); "line" in messages is the reading's position in the file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, BinaryIO
from urllib.parse import urlparse
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from meters.ingest.staging import (
    MAX_DURATION_S,
    BatchError,
    ParsedItem,
    RowError,
    StageRow,
    number_problem,
)
from meters.models import ImportBatch
from portal.lib.timezones import available_time_zones

ATOM = "{http://www.w3.org/2005/Atom}"
ESPI = "{http://naesb.org/espi}"
# ESPI UnitSymbolKind -> our unit symbols
UOM = {72: "wh", 169: "therm", 42: "m3", 119: "ft3", 128: "gal"}
SERVICE_KINDS = {0: "electricity", 1: "gas", 2: "water", 4: "heat"}
DELTA_ACCUMULATIONS = {None, 4}  # deltaData; absent means the usual delta data
CUMULATIVE_ACCUMULATIONS = {1, 3, 9}  # bulkQuantity, cumulative, summation

# LocalTimeParameters -> IANA zone. ESPI states a standard offset and two DST rules, not a
# place, and several places share an offset and rules but not their history (or their
# future), so a zone is named only where the combination is the rule set of one North
# American zone that Green Button files come from; anything else stays unmapped and the
# service point takes the batch's or the organisation's zone, never a guess. A rule is
# ESPI's DstRuleType bit map: month (bits 28-31), occurrence (25-27: 2 first, 3 second,
# 7 last), weekday (17-19: 7 Sunday), hour (12-16), seconds (0-11).
US_RULES_2007 = (0x360E2000, 0xB40E2000)  # 2nd Sunday of March 02:00 - 1st Sunday of Nov.
US_RULES_1987 = (0x440E2000, 0xAE0E2000)  # 1st Sunday of April 02:00 - last Sunday of Oct.
NO_DST = (0, 0)
LOCAL_TIME_ZONES: dict[tuple[int, int, tuple[int, int]], str] = {
    **{
        (offset, 3600, rules): zone
        for rules in (US_RULES_2007, US_RULES_1987)
        for offset, zone in (
            (-18000, "America/New_York"),
            (-21600, "America/Chicago"),
            (-25200, "America/Denver"),
            (-28800, "America/Los_Angeles"),
            (-32400, "America/Anchorage"),
        )
    },
    # The two US zones without DST (Arizona, Hawaii).
    (-25200, 0, NO_DST): "America/Phoenix",
    (-36000, 0, NO_DST): "Pacific/Honolulu",
}
DST_DISABLED = 0xFFFFFFFF


@dataclass
class _UsagePoint:
    atom_id: str
    kind: int | None
    related: list[str] = field(default_factory=list)
    time_zone: str | None = None


@dataclass
class _MeterReading:
    related: list[str] = field(default_factory=list)
    up: str | None = None


@dataclass
class _ReadingType:
    uom: int | None = None
    power: int = 0
    accumulation: int | None = None
    flow: int | None = None
    interval: int | None = None


def _path(href: str | None) -> str:
    return urlparse(href or "").path.rstrip("/")


def _int(element: Element | None, name: str) -> int | None:
    child = element.find(ESPI + name) if element is not None else None
    if child is None or child.text is None or not child.text.strip():
        return None
    try:
        number = Decimal(child.text.strip())
    except InvalidOperation:
        raise BatchError(f"{name} is not a number: {child.text.strip()[:40]!r}") from None
    # Checked before int(): the digits of 1e999999999 would take forever to make.
    if not number.is_finite() or abs(number) >= 2**31:
        raise BatchError(f"{name} is out of range: {child.text.strip()[:40]!r}")
    return int(number)


def _links(entry: Element) -> dict[str, list[str]]:
    links: dict[str, list[str]] = {}
    for link in entry.findall(ATOM + "link"):
        links.setdefault(link.get("rel", ""), []).append(_path(link.get("href")))
    return links


def _entries(stream: BinaryIO) -> Iterator[Element]:
    try:
        context = iterparse(stream, events=("start", "end"), forbid_dtd=True)
        root: Element | None = None
        for event, element in context:
            if root is None:
                root = element
            if event == "end" and element.tag == ATOM + "entry":
                yield element
                root.clear()  # keep memory flat however long the feed is
    except DefusedXmlException as error:
        raise BatchError(f"The XML was refused as unsafe: {type(error).__name__}.") from None
    except ParseError as error:
        raise BatchError(f"The XML is malformed: {error}.") from None
    except (LookupError, ValueError) as error:
        # expat refuses encodings it cannot handle (unknown ones, UTF-16/32 declared in text).
        raise BatchError(f"The XML declares an encoding that cannot be read: {error}.") from None


@dataclass
class _Feed:
    usage_points: dict[str, _UsagePoint] = field(default_factory=dict)
    meter_readings: dict[str, _MeterReading] = field(default_factory=dict)
    reading_types: dict[str, _ReadingType] = field(default_factory=dict)
    local_times: dict[str, str | None] = field(default_factory=dict)
    blocks: int = 0


def _collect(stream: BinaryIO) -> _Feed:
    feed = _Feed()
    for entry in _entries(stream):
        content = entry.find(ATOM + "content")
        if content is None:
            continue
        links = _links(entry)
        self_href = (links.get("self") or [""])[0]
        atom_id = (entry.findtext(ATOM + "id") or "").strip()
        if (usage := content.find(ESPI + "UsagePoint")) is not None:
            kind = _int(usage.find(ESPI + "ServiceCategory"), "kind")
            feed.usage_points[self_href] = _UsagePoint(
                atom_id=atom_id.removeprefix("urn:uuid:") or self_href,
                kind=kind,
                related=links.get("related", []),
            )
        elif content.find(ESPI + "MeterReading") is not None:
            feed.meter_readings[self_href] = _MeterReading(
                related=links.get("related", []), up=next(iter(links.get("up", [])), None)
            )
        elif (rt := content.find(ESPI + "ReadingType")) is not None:
            feed.reading_types[self_href] = _ReadingType(
                uom=_int(rt, "uom"),
                power=_int(rt, "powerOfTenMultiplier") or 0,
                accumulation=_int(rt, "accumulationBehaviour"),
                flow=_int(rt, "flowDirection"),
                interval=_int(rt, "intervalLength"),
            )
        elif (local := content.find(ESPI + "LocalTimeParameters")) is not None:
            feed.local_times[self_href] = local_time_zone(
                tz_offset=_int(local, "tzOffset"),
                dst_offset=_int(local, "dstOffset"),
                dst_start=_hex(local, "dstStartRule"),
                dst_end=_hex(local, "dstEndRule"),
            )
        else:
            feed.blocks += len(content.findall(ESPI + "IntervalBlock"))
    for up in feed.usage_points.values():
        up.time_zone = _match_local_time(feed, up)
    return feed


def _hex(element: Element, name: str) -> int | None:
    text = (element.findtext(ESPI + name) or "").strip()
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


def local_time_zone(
    *, tz_offset: int | None, dst_offset: int | None, dst_start: int | None, dst_end: int | None
) -> str | None:
    """The IANA zone of a LocalTimeParameters block, or None where it names no single zone.

    Without DST (no offset, or rules absent or disabled) a whole-hour offset is a fixed zone
    (Etc/GMT+8 is UTC-8: the sign is POSIX's); it is exact for the file whatever the place.
    """
    if tz_offset is None:
        return None
    unset = (None, 0, DST_DISABLED)
    if not dst_offset or dst_start in unset or dst_end in unset:
        zone = LOCAL_TIME_ZONES.get((tz_offset, 0, NO_DST))
        if zone is None and tz_offset % 3600 == 0 and -12 <= tz_offset // 3600 <= 14:
            hours = -tz_offset // 3600
            zone = "Etc/GMT" if hours == 0 else f"Etc/GMT{hours:+d}"
    else:
        zone = LOCAL_TIME_ZONES.get((tz_offset, dst_offset, (dst_start or 0, dst_end or 0)))
    return zone if zone in available_time_zones() else None


def _match_local_time(feed: _Feed, usage_point: _UsagePoint) -> str | None:
    """The zone of the LocalTimeParameters the usage point links to (or the feed's only one)."""
    for href in usage_point.related:
        if href in feed.local_times:
            return feed.local_times[href]
    if len(feed.local_times) == 1:
        return next(iter(feed.local_times.values()))
    return None


def _match_meter_reading(feed: _Feed, paths: list[str]) -> str | None:
    candidates = [
        mr for mr in feed.meter_readings if any(p == mr or p.startswith(mr + "/") for p in paths)
    ]
    if candidates:
        return max(candidates, key=len)
    for mr, info in feed.meter_readings.items():
        if any(p in info.related for p in paths):
            return mr
    return next(iter(feed.meter_readings)) if len(feed.meter_readings) == 1 else None


def _match_reading_type(feed: _Feed, mr: str) -> _ReadingType | None:
    for href in feed.meter_readings[mr].related:
        if href in feed.reading_types:
            return feed.reading_types[href]
    return next(iter(feed.reading_types.values())) if len(feed.reading_types) == 1 else None


def _match_usage_point(feed: _Feed, mr: str) -> _UsagePoint | None:
    info = feed.meter_readings[mr]
    for up in feed.usage_points.values():
        if mr in up.related or (info.up and info.up in up.related):
            return up
    marker = mr.split("/MeterReading", maxsplit=1)[0].rsplit("/UsagePoint/", 1)
    if len(marker) == 2:
        for href, up in feed.usage_points.items():
            if href.endswith("/UsagePoint/" + marker[1]):
                return up
    return next(iter(feed.usage_points.values())) if len(feed.usage_points) == 1 else None


def parse(stream: BinaryIO, batch: ImportBatch) -> Iterator[ParsedItem]:
    feed = _collect(stream)
    if not feed.blocks:
        raise BatchError("The feed has no IntervalBlock: there are no readings in it.")
    for href, reading_type in feed.reading_types.items():
        if reading_type.uom is not None and reading_type.uom not in UOM:
            raise BatchError(
                f"ReadingType {href or '?'} uses uom {reading_type.uom}, which cannot be "
                f"converted (supported: {', '.join(map(str, sorted(UOM)))})."
            )
    stream.seek(0)
    number = 0
    for entry in _entries(stream):
        content = entry.find(ATOM + "content")
        blocks = content.findall(ESPI + "IntervalBlock") if content is not None else []
        if not blocks:
            continue
        links = _links(entry)
        mr = _match_meter_reading(feed, links.get("self", []) + links.get("up", []))
        block_type = _match_reading_type(feed, mr) if mr else None
        usage_point = _match_usage_point(feed, mr) if mr else None
        for block in blocks:  # a containerised feed may put several in one entry
            for interval_reading in block.findall(ESPI + "IntervalReading"):
                number += 1
                yield from _row(number, interval_reading, block_type, usage_point)


def _row(
    number: int,
    element: Element,
    reading_type: _ReadingType | None,
    usage_point: _UsagePoint | None,
) -> list[ParsedItem]:
    """The reading as a row, or all of its problems: a reading that cannot be linked is still
    checked, so that its sender learns everything wrong with it at once."""
    problems: list[ParsedItem] = []
    if usage_point is None or reading_type is None:
        problems.append(RowError(number, "espi_unlinked"))
    elif reading_type.uom is None:
        problems.append(RowError(number, "espi_no_uom"))
    period = element.find(ESPI + "timePeriod")
    raw_value = element.findtext(ESPI + "value")
    start_text = period.findtext(ESPI + "start") if period is not None else None
    raw_duration = period.findtext(ESPI + "duration") if period is not None else None
    if raw_value is None or start_text is None:
        return [*problems, RowError(number, "espi_incomplete")]
    power = reading_type.power if reading_type is not None else 0
    try:
        value = Decimal(raw_value.strip()).scaleb(power)
        start = dt.datetime.fromtimestamp(float(start_text.strip()), tz=dt.UTC)
    except (ArithmeticError, ValueError, OSError):
        problems.append(
            RowError(
                number, "espi_unreadable", {"value": repr(raw_value), "start": repr(start_text)}
            )
        )
        return problems
    cumulative = reading_type is not None and reading_type.accumulation in CUMULATIVE_ACCUMULATIONS
    field = "value" if cumulative else "delta"
    if (problem := number_problem(number, field, value)) is not None:
        problems.append(problem)
    duration = _duration(raw_duration)
    if duration is None or not 0 <= duration <= MAX_DURATION_S:
        problems.append(
            RowError(number, "out_of_range", {"field": "duration", "value": repr(raw_duration)})
        )
    if problems or reading_type is None or usage_point is None or reading_type.uom is None:
        return problems
    try:
        end = start + dt.timedelta(seconds=duration or 0)
    except OverflowError:
        return [RowError(number, "out_of_range", {"field": "start", "value": repr(start_text)})]
    direction = "export" if reading_type.flow == 19 else "import"
    code = direction if reading_type.interval is None else f"{direction}-{reading_type.interval}"
    kind = SERVICE_KINDS.get(usage_point.kind) if usage_point.kind is not None else None
    if kind is None:
        kind = "electricity" if UOM[reading_type.uom] == "wh" else None
    values: dict[str, Any] = {"value": value} if cumulative else {"delta": value}
    return [
        StageRow(
            line=number,
            ts=end,
            unit=UOM[reading_type.uom],
            serial=usage_point.atom_id[:64],
            register_code=code[:32],
            duration_s=None if cumulative else duration,
            kind=kind,
            direction=direction,
            series="register" if cumulative else "interval",
            interval_s=reading_type.interval,
            time_zone=usage_point.time_zone,
            **values,
        )
    ]


def _duration(text: str | None) -> int | None:
    """A timePeriod's duration in seconds (0 when absent); None when it is not a whole number
    of seconds a reading can have (checked before int(): 1e999999999 would never finish)."""
    if text is None or not text.strip():
        return 0
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not number.is_finite() or abs(number) >= 2**31 or number != number.to_integral_value():
        return None
    return int(number)
