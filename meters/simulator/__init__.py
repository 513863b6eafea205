"""A fleet simulator: realistic 15-minute readings in every supported format, with anomalies
injected on purpose and an answer key that says what the validation must make of each.

    fleet = fleet_random(meters=40, seed=7)
    result = simulate(fleet=fleet, start=..., days=15, out_dir=Path("sim"), seed=7)

writes into `out_dir`:

    files/            the deliveries: one file per format, window (a week) and group of units
    fleet.json        service points, meters, registers and installations to create first
    manifest.json     the files in time order, and in the (shuffled) order they are delivered
    answer_key.json   every anomaly: meter serial, register, time, and the rule or event expected

Generation is pure: nothing here touches the database. `meters.simulator.load` creates the fleet
through the services and imports the files through the real pipeline.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from meters.simulator.engine import KINDS, Anomaly, Generator
from meters.simulator.fleet import (
    FORMATS,
    Fleet,
    Installation,
    MeterSpec,
    RegisterSpec,
    Unit,
    fleet_random,
    fleet_summary,
)
from meters.simulator.profiles import DAY_SECONDS, SLOT_SECONDS, SLOTS_PER_DAY, Load
from meters.simulator.writers import SUFFIX, WRITERS, Clock

__all__ = [
    "FORMATS",
    "KINDS",
    "Anomaly",
    "Fleet",
    "Installation",
    "Load",
    "MeterSpec",
    "RegisterSpec",
    "SimulationResult",
    "Unit",
    "anomaly_at",
    "fleet_random",
    "fleet_summary",
    "simulate",
]


@dataclass(frozen=True)
class SimulationResult:
    out_dir: Path
    files: int
    rows: int
    readings: int
    anomalies: int
    seconds: float
    counts: dict[str, int]

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def anomaly_at(
    *,
    number: int,
    kind: str,
    unit: Unit,
    when: dt.datetime,
    start: dt.datetime,
    window_days: int,
    serial: str = "",
    code: str = "",
    **params: Any,
) -> Anomaly:
    """An anomaly at a given time (the reading at `when`), for hand-made plans such as the
    demo's. The caller keeps it away from the window edges."""
    offset = int((when - start).total_seconds()) // SLOT_SECONDS - 1
    per_window = window_days * SLOTS_PER_DAY
    return Anomaly(
        id=number,
        kind=kind,
        unit=unit.key,
        window=offset // per_window,
        slot=offset % per_window,
        serial=serial or unit.meters[0].serial,
        code=code,
        **params,
    )


def _iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")


def _groups(fleet: Fleet, per_file: int) -> list[tuple[str, int, list[Unit]]]:
    groups: list[tuple[str, int, list[Unit]]] = []
    for fmt in FORMATS:
        units = [u for u in fleet.units if u.fmt == fmt]
        for index in range(0, len(units), per_file):
            groups.append((fmt, index // per_file + 1, units[index : index + per_file]))
    return groups


def _delivery(
    names: list[str], *, seed: int, shuffle: bool, redeliver: bool
) -> tuple[list[str], str | None]:
    """The order the files arrive in: shuffled, and one of them sent twice."""
    rng = random.Random(f"{seed}|delivery")  # noqa: S311 - a simulation
    order = list(names)
    if shuffle:
        rng.shuffle(order)
    again = None
    if redeliver and order:
        again = rng.choice(order)
        first = order.index(again)
        order.insert(rng.randint(first + 1, len(order)), again)
    return order, again


def _write_key(path: Path, head: dict[str, Any], entries: Path) -> None:
    """answer_key.json: the summary, then the entries streamed from their temporary file."""
    with path.open("w", encoding="utf-8") as out, entries.open(encoding="utf-8") as lines:
        out.write(json.dumps(head)[:-1] + ', "anomalies": [\n')
        for number, line in enumerate(lines):
            out.write((",\n" if number else "") + line.rstrip("\n"))
        out.write("\n]}\n")
    entries.unlink()


def _write_window(
    generator: Generator,
    window: int,
    out_dir: Path,
    planned: dict[tuple[str, int], list[Anomaly]],
    *,
    seed: int,
    resend_share: float,
    units_per_file: int,
) -> list[dict[str, Any]]:
    """Generate one window for every unit; write its files unless the window is skipped."""
    fleet = generator.fleet
    first_epoch = generator.start_epoch + generator.windows[window][0] * DAY_SECONDS
    clock = Clock(fleet.time_zone)
    day = dt.datetime.fromtimestamp(first_epoch, clock.tz)
    files: list[dict[str, Any]] = []
    for fmt, group, units in _groups(fleet, units_per_file):
        name = f"files/{window + 1:03d}-{fmt}-{group:02d}-{day:%Y%m%d}{SUFFIX[fmt]}"
        writer = WRITERS[fmt](out_dir / name, clock) if generator.recording else None
        for unit in units:
            chance = random.Random(f"{seed}|resend|{unit.key}|{window}").random()  # noqa: S311
            unit_window = generator.window(
                unit,
                window,
                planned.get((unit.key, window), []),
                resend=window > 0 and chance < resend_share,
            )
            if writer is not None:
                writer.write(unit_window)
        if writer is not None:
            writer.close()
            files.append(
                {
                    "name": name,
                    "format": fmt,
                    "group": group,
                    "window": window,
                    "from": _iso(first_epoch),
                    "to": _iso(generator.window_end(window)),
                    "rows": writer.rows,
                }
            )
    return files


def simulate(
    *,
    fleet: Fleet,
    start: dt.datetime,
    days: int,
    out_dir: Path,
    seed: int,
    window_days: int = 7,
    anomaly_rate: float = 1.0,
    anomalies: list[Anomaly] | None = None,
    shuffle: bool = True,
    redeliver: bool = True,
    resend_share: float = 0.1,
    units_per_file: int = 250,
    skip_before: dt.datetime | None = None,
    until: dt.datetime | None = None,
    installed_at: dt.datetime | None = None,
) -> SimulationResult:
    """Generate the fleet's readings from `start` for `days` days into `out_dir`.

    `anomaly_rate` is the number of anomalies per unit and 30 days (0 for clean data), unless
    `anomalies` gives the plan. Windows that end before `skip_before` are generated but not
    written (to continue an earlier simulation: the rest comes out the same); readings after
    `until` are not generated (a simulation up to now).
    """
    began = time.monotonic()
    generator = Generator(
        fleet=fleet, start=start, days=days, window_days=window_days, seed=seed, until=until
    )
    if anomalies is None:
        planned = generator.plan(rate=anomaly_rate, rng=random.Random(f"{seed}|plan"))  # noqa: S311
    else:
        # Hand-made plans (the demo's) keep what fits the period: a short demo has fewer.
        planned = [a for a in anomalies if generator.fits(a)]
    generator.installations(planned, installed_at=installed_at or start - dt.timedelta(days=30))
    by_window: dict[tuple[str, int], list[Anomaly]] = defaultdict(list)
    for anomaly in planned:
        by_window[anomaly.unit, anomaly.window].append(anomaly)
    files_dir = out_dir / "files"
    files_dir.mkdir(parents=True, exist_ok=True)
    entries_path = out_dir / ".answer_key.jsonl"
    skip = int(skip_before.timestamp()) if skip_before else None
    manifest: list[dict[str, Any]] = []
    with entries_path.open("w", encoding="utf-8") as entries:
        generator.sink = lambda entry: entries.write(json.dumps(entry.as_json()) + "\n")
        for window in range(len(generator.windows)):
            if not generator.slots(window):
                break
            generator.recording = skip is None or generator.window_end(window) > skip
            manifest += _write_window(
                generator, window, out_dir, by_window, seed=seed, resend_share=resend_share,
                units_per_file=units_per_file,
            )  # fmt: skip
    rows = sum(entry["rows"] for entry in manifest)
    names = [entry["name"] for entry in manifest]
    delivery, again = _delivery(names, seed=seed, shuffle=shuffle, redeliver=redeliver)
    (out_dir / "fleet.json").write_text(json.dumps(fleet.as_json(), indent=1))
    (out_dir / "manifest.json").write_text(
        json.dumps({"files": manifest, "delivery": delivery, "redelivered": again}, indent=1)
    )
    totals = generator.totals
    counts = {
        "readings": totals["readings"],
        "duplicates": totals["duplicates"],
        "conflicts": totals["conflicts"],
        "estimated": totals["estimated"],
        "events": len(generator.events),
        "duplicate_batches": 1 if again else 0,
        "files": len(manifest),
        "rows_written": rows,
    }
    key = {
        "version": 1,
        "seed": seed,
        "start": _iso(generator.start_epoch),
        "end": _iso(generator.last_epoch),
        "days": days,
        "window_days": window_days,
        "time_zone": fleet.time_zone,
        "meters": len(fleet.meters()),
        "formats": sorted({u.fmt for u in fleet.units}),
        "expected": counts,
        "planned": [asdict(a) for a in planned],
    }
    _write_key(out_dir / "answer_key.json", key, entries_path)
    return SimulationResult(
        out_dir=out_dir,
        files=len(manifest),
        rows=rows,
        readings=totals["readings"],
        anomalies=len(planned),
        seconds=time.monotonic() - began,
        counts=counts,
    )
