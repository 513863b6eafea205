"""Loading a simulation: the fleet through `fleet_save`, the files through the real pipeline.

Both are idempotent: fleet objects are looked up by their natural keys first (service point
code, meter serial, register code, installation start), and a file imported again is a
duplicate batch that imports nothing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connection

from meters.ingest import pipeline
from meters.models import ImportBatch, Meter, MeterInstallation, Register, ServicePoint
from meters.selectors.fleet import meter_get_by_serial, register_for_meter
from meters.selectors.imports import batch_get_by_id
from meters.services import fleet as fleet_services
from meters.services import imports as import_services
from portal.audit.actors import Actor

logger = logging.getLogger(__name__)  # seed_demo prints it as progress


@dataclass
class ImportSummary:
    """What the batches of one import run did, summed."""

    batches: int = 0
    done: int = 0
    failed: int = 0
    duplicate_batches: int = 0
    seen: int = 0
    inserted: int = 0
    duplicate: int = 0
    conflicting: int = 0
    rejected: int = 0
    estimated: int = 0
    errors: list[str] = field(default_factory=list)
    batch_ids: list[int] = field(default_factory=list)

    def merge(self, other: ImportSummary) -> None:
        for name in (
            "batches",
            "done",
            "failed",
            "duplicate_batches",
            "seen",
            "inserted",
            "duplicate",
            "conflicting",
            "rejected",
            "estimated",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors
        self.batch_ids += other.batch_ids

    def add(self, batch: ImportBatch) -> None:
        self.batches += 1
        self.batch_ids.append(batch.pk)
        if batch.status == ImportBatch.Status.DUPLICATE:
            self.duplicate_batches += 1
            return
        if batch.status in (ImportBatch.Status.FAILED, ImportBatch.Status.REJECTED):
            self.failed += 1
            self.errors.append(f"{batch.original_name}: {batch.error}")
        elif batch.status in (ImportBatch.Status.DONE, ImportBatch.Status.DONE_WITH_REJECTIONS):
            self.done += 1
        self.seen += batch.seen
        self.inserted += batch.inserted
        self.duplicate += batch.duplicate
        self.conflicting += batch.conflicting
        self.rejected += batch.rejected
        self.estimated += batch.estimated


def _when(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def fleet_apply(*, fleet: dict[str, Any], actor: Actor) -> int:
    """Create what is missing of a `fleet.json` fleet; return how many objects were created."""
    created = 0
    points: dict[str, ServicePoint] = {}
    for spec in fleet["service_points"]:
        point = ServicePoint.objects.filter(code=spec["code"]).first()
        if point is None:
            point = ServicePoint(
                code=spec["code"],
                kind=spec["kind"],
                address=spec["address"],
                time_zone=spec["time_zone"],
            )
            fleet_services.fleet_save(instance=point, actor=actor)
            created += 1
        points[point.code] = point
    meters: dict[str, Meter] = {}
    for spec in fleet["meters"]:
        meter = meter_get_by_serial(serial=spec["serial"])
        if meter is None:
            meter = Meter(
                serial=spec["serial"],
                kind=spec["kind"],
                communication=spec["communication"],
                dev_eui=spec["dev_eui"],
                max_rate=spec["max_rate"],
            )
            fleet_services.fleet_save(instance=meter, actor=actor)
            created += 1
        meters[meter.serial] = meter
        for register_spec in spec["registers"]:
            if register_for_meter(meter=meter, code=register_spec["code"]) is None:
                fleet_services.fleet_save(
                    instance=Register(meter=meter, **register_spec), actor=actor
                )
                created += 1
    for spec in fleet["installations"]:
        meter = meters[spec["meter"]]
        installed_at = dt.datetime.fromisoformat(spec["installed_at"])
        if MeterInstallation.objects.filter(meter=meter, installed_at=installed_at).exists():
            continue
        installation = MeterInstallation(
            meter=meter,
            service_point=points[spec["service_point"]],
            installed_at=installed_at,
            removed_at=_when(spec["removed_at"]),
        )
        fleet_services.fleet_save(instance=installation, actor=actor)
        created += 1
    return created


def file_import(
    *,
    path: Path,
    fmt: str,
    actor: Actor,
    as_of: dt.datetime,
    name: str = "",
    register_meters: bool = True,
) -> ImportBatch:
    """Import one file through the pipeline, in this process, and return its batch."""
    with path.open("rb") as content:
        batch = import_services.batch_create(
            source=ImportBatch.Source.COMMAND,
            fmt=fmt,
            content=content,
            original_name=name or path.name,
            actor=actor,
            register_meters=register_meters,
            as_of=as_of,
        )
    if batch.status == ImportBatch.Status.QUEUED:
        pipeline.run(batch_id=batch.pk, actor=actor, as_of=as_of)
    return batch_get_by_id(batch_id=batch.pk) or batch


def files_import(
    *,
    out_dir: Path,
    entries: list[dict[str, Any]],
    actor: Actor,
    as_of: dt.datetime,
    register_meters: bool = True,
    workers: int = 1,
) -> ImportSummary:
    """Import manifest entries in the order given.

    With `workers` > 1 (and outside a transaction), the files of different groups of units
    (which share no meter) are imported side by side, each group's files in order: every
    batch is still the pipeline's own, with its own transactions.
    """
    summary = ImportSummary()
    done = itertools.count(1)  # shared by the lanes: next() on it is atomic

    def one(entry: dict[str, Any]) -> ImportBatch:
        batch = file_import(
            path=out_dir / entry["name"],
            fmt=entry["format"],
            actor=actor,
            as_of=as_of,
            register_meters=register_meters,
        )
        logger.info(
            "batch %d of %d %s: %s (%s readings stored)",
            next(done),
            len(entries),
            batch.status,
            entry["name"],
            f"{batch.inserted:,}",
        )
        return batch

    if workers <= 1 or connection.in_atomic_block:
        for entry in entries:
            summary.add(one(entry))
        return summary
    lanes: dict[int, list[dict[str, Any]]] = {}
    for entry in entries:
        lanes.setdefault(entry.get("group", 1) % workers, []).append(entry)

    def lane(lane_entries: list[dict[str, Any]]) -> ImportSummary:
        part = ImportSummary()
        try:
            for entry in lane_entries:
                part.add(one(entry))
            return part
        finally:
            connection.close()  # this thread's own connection

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for part in pool.map(lane, lanes.values()):
            summary.merge(part)
    return summary


def delivery(*, out_dir: Path, in_order: bool = False) -> list[dict[str, Any]]:
    """The manifest's files in delivery order (shuffled, one twice), or in time order."""
    manifest = json.loads((out_dir / "manifest.json").read_text())
    formats = {entry["name"]: entry["format"] for entry in manifest["files"]}
    names = list(formats) if in_order else list(manifest["delivery"])
    if in_order and manifest.get("redelivered"):
        names.append(manifest["redelivered"])
    return [{"name": name, "format": formats[name]} for name in names]
