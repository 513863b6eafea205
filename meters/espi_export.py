"""Green Button (NAESB ESPI) Atom feeds written from interval consumption.

The writer is the counterpart of `meters.ingest.formats.espi`: a feed it writes imports through
that parser into the same hourly consumption. One UsagePoint per service point (its Atom id is
`urn:uuid:<service point public id>`, which the importer takes as the meter serial), one
MeterReading and ReadingType per direction (forward for consumption, reverse for export), and
IntervalBlocks of delta data (accumulationBehaviour 4). Energy is written in Wh (uom 72), volume
in m³ (uom 42) with powerOfTenMultiplier -3, so a value is the litres as an integer and nothing
is rounded on either side.

Entries are built with ElementTree and written one at a time, so a year of hours for many
service points never sits in memory: `blocks` may be a generator that reads as it goes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO
from xml.etree.ElementTree import Element, SubElement, register_namespace, tostring

ATOM_NS = "http://www.w3.org/2005/Atom"
ESPI_NS = "http://naesb.org/espi"
# Atom elements are written unqualified inside a feed that declares Atom as its default
# namespace (ElementTree cannot combine a default namespace with plain attribute names);
# ESPI elements are qualified.
_E = "{" + ESPI_NS + "}"
# The prefix every Green Button file uses; ElementTree would otherwise invent "ns1".
register_namespace("espi", ESPI_NS)

# ServiceCategory kinds and commodities (ESPI CommodityKind) by utility kind.
SERVICE_KIND = {"electricity": 0, "gas": 1, "water": 2, "heat": 4}
COMMODITY = {"electricity": 1, "gas": 7, "water": 9, "heat": 12}
# Base unit -> (uom, powerOfTenMultiplier, ReadingType kind): Wh as energy, litres as m³ x 10^-3.
UNIT_CODES = {"Wh": (72, 0, 12), "L": (42, -3, 58)}
FLOW_FORWARD, FLOW_REVERSE = 1, 19
DELTA_DATA = 4
# ESPI QualityOfReading: estimated by interpolation, and a mix of qualities in one interval.
QUALITY_ESTIMATED, QUALITY_MIXED = 9, 13


@dataclass(frozen=True)
class IntervalValue:
    """One interval: its start (Unix seconds, UTC), its consumption in base units, and how much
    of that was estimated."""

    start: int
    value: int
    estimated: int = 0


@dataclass(frozen=True)
class EspiSeries:
    """One direction of one usage point: its unit and its interval blocks, in time order."""

    direction: str  # "import" or "export"
    unit: str  # "Wh" or "L"
    interval: int  # seconds
    blocks: Iterable[list[IntervalValue]]


@dataclass(frozen=True)
class EspiUsagePoint:
    usage_point_id: str  # a UUID
    title: str
    kind: str  # a meters.models.UtilityKind value
    series: list[EspiSeries]


def _entry_id(point: EspiUsagePoint, *parts: object) -> str:
    """A stable UUID for an entry of a usage point (the same export gives the same ids)."""
    return f"urn:uuid:{uuid.uuid5(uuid.UUID(point.usage_point_id), ':'.join(map(str, parts)))}"


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(parent: Element, tag: str, value: object) -> Element:
    child = SubElement(parent, tag)
    child.text = str(value)
    return child


class _Feed:
    def __init__(self, out: IO[bytes], *, base_url: str, updated: dt.datetime) -> None:
        self.out = out
        self.base = base_url.rstrip("/")
        self.updated = _stamp(updated)
        self.reading_types = 0

    def entry(
        self,
        *,
        atom_id: str,
        title: str,
        self_href: str,
        up_href: str,
        related: Iterable[str] = (),
        content: Element,
    ) -> None:
        entry = Element("entry")
        _text(entry, "id", atom_id)
        for rel, href in [("self", self_href), ("up", up_href), *(("related", r) for r in related)]:
            SubElement(entry, "link", rel=rel, href=self.base + href)
        _text(entry, "title", title)
        entry.append(content)
        _text(entry, "published", self.updated)
        _text(entry, "updated", self.updated)
        self.out.write(tostring(entry, encoding="unicode").encode())
        self.out.write(b"\n")


def _content(tag: str) -> tuple[Element, Element]:
    content = Element("content")
    return content, SubElement(content, _E + tag)


def espi_write(
    out: IO[bytes],
    *,
    feed_id: str,
    title: str,
    updated: dt.datetime,
    usage_points: Iterable[EspiUsagePoint],
    base_url: str = "/espi/1_1/resource",
    customer: str = "1",
) -> int:
    """Write a Green Button feed of interval consumption to `out`; return the readings written.

    `feed_id` and every usage point id are UUIDs. Hrefs are `base_url` plus the usual ESPI
    resource paths, which is how the importer links blocks to their reading type and usage point.
    """
    feed = _Feed(out, base_url=base_url, updated=updated)
    root = Element("feed", xmlns=ATOM_NS)
    _text(root, "id", f"urn:uuid:{feed_id}")
    _text(root, "title", title)
    _text(root, "updated", feed.updated)
    SubElement(root, "link", rel="self", href=f"{feed.base}/RetailCustomer/{customer}")
    # The feed's own elements first, then the entries one by one, then its closing tag.
    head = tostring(root, encoding="unicode")
    out.write(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write(head.removesuffix("</feed>").encode() + b"\n")
    written = 0
    for number, point in enumerate(usage_points, start=1):
        written += _usage_point(feed, point, f"/RetailCustomer/{customer}/UsagePoint/{number}")
    out.write(b"</feed>\n")
    return written


def _usage_point(feed: _Feed, point: EspiUsagePoint, path: str) -> int:
    content, usage = _content("UsagePoint")
    category = SubElement(usage, _E + "ServiceCategory")
    _text(category, _E + "kind", SERVICE_KIND.get(point.kind, 0))
    feed.entry(
        atom_id=f"urn:uuid:{point.usage_point_id}",
        title=point.title,
        self_href=path,
        up_href=path.rsplit("/", 1)[0],
        related=[f"{path}/MeterReading"],
        content=content,
    )
    written = 0
    for number, series in enumerate(point.series, start=1):
        written += _series(feed, point, series, f"{path}/MeterReading/{number}")
    return written


def _series(feed: _Feed, point: EspiUsagePoint, series: EspiSeries, path: str) -> int:
    uom, power, quantity_kind = UNIT_CODES[series.unit]
    feed.reading_types += 1
    reading_type = f"/ReadingType/{feed.reading_types}"
    content, rt = _content("ReadingType")
    _text(rt, _E + "accumulationBehaviour", DELTA_DATA)
    _text(rt, _E + "commodity", COMMODITY.get(point.kind, 0))
    _text(rt, _E + "dataQualifier", 12)  # normal
    flow = FLOW_REVERSE if series.direction == "export" else FLOW_FORWARD
    _text(rt, _E + "flowDirection", flow)
    _text(rt, _E + "intervalLength", series.interval)
    _text(rt, _E + "kind", quantity_kind)
    _text(rt, _E + "phase", 0)
    _text(rt, _E + "powerOfTenMultiplier", power)
    _text(rt, _E + "timeAttribute", 0)
    _text(rt, _E + "uom", uom)
    direction = "export" if series.direction == "export" else "consumption"
    feed.entry(
        atom_id=_entry_id(point, direction, "type"),
        title=f"{direction}, {series.interval} s",
        self_href=reading_type,
        up_href="/ReadingType",
        content=content,
    )
    content, _reading = _content("MeterReading")
    feed.entry(
        atom_id=_entry_id(point, direction),
        title=f"{point.title} {direction}",
        self_href=path,
        up_href=path.rsplit("/", 1)[0],
        related=[f"{path}/IntervalBlock", reading_type],
        content=content,
    )
    return sum(
        _block(
            feed,
            point,
            block,
            direction=direction,
            interval=series.interval,
            up=f"{path}/IntervalBlock",
        )
        for block in series.blocks
        if block
    )


def _block(
    feed: _Feed,
    point: EspiUsagePoint,
    block: list[IntervalValue],
    *,
    direction: str,
    interval: int,
    up: str,
) -> int:
    first, last = block[0].start, block[-1].start + interval
    content, element = _content("IntervalBlock")
    span = SubElement(element, _E + "interval")
    _text(span, _E + "duration", last - first)
    _text(span, _E + "start", first)
    for item in block:
        reading = SubElement(element, _E + "IntervalReading")
        if item.estimated:
            quality = SubElement(reading, _E + "ReadingQuality")
            code = QUALITY_ESTIMATED if item.estimated == item.value else QUALITY_MIXED
            _text(quality, _E + "quality", code)
        period = SubElement(reading, _E + "timePeriod")
        _text(period, _E + "duration", interval)
        _text(period, _E + "start", item.start)
        _text(reading, _E + "value", item.value)
    feed.entry(
        atom_id=_entry_id(point, direction, first),
        title="",
        self_href=f"{up}/{first}",
        up_href=up,
        content=content,
    )
    return len(block)
