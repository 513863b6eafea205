"""The fleet simulator against the real pipeline: every injected anomaly is flagged by the rule
the answer key names, nothing else is, and the delivery order does not change the outcome."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from meters.models import SUSPECT_RULES, MeterEvent, Quality, ReadingConflict, RollupDaily, Rule
from meters.simulator import KINDS, fleet_random, simulate
from meters.simulator.load import ImportSummary, delivery, files_import, fleet_apply
from portal.audit.actors import Actor
from tests.factories import SYSTEM
from tests.meters.helpers import readings_checksum

SEED = 11
START = dt.datetime(2026, 2, 2, 23, 0, tzinfo=dt.UTC)  # local midnight in Amsterdam
DAYS = 10
RECEIVED = START + dt.timedelta(days=DAYS, hours=2)
# Every rule is checked both ways (each injected anomaly flagged, nothing else flagged); these
# must also have been injected at least once.
CHECKED = (
    Rule.SPIKE
    | Rule.NEGATIVE
    | Rule.ROLLOVER
    | Rule.RESET
    | Rule.METER_EXCHANGE
    | Rule.GAP
    | Rule.ESTIMATED
    | Rule.STUCK
    | Rule.CLOCK_SKEW
    | Rule.CONFLICT
    | Rule.TAMPER
)

Reading = tuple[str, str, dt.datetime]


def simulation_import(
    *, out_dir: Path, actor: Actor, as_of: dt.datetime, in_order: bool = False
) -> ImportSummary:
    """Create the simulated fleet, then import its files in delivery order (or in time order).

    `as_of` is the time the files are received: readings after it are rejected as future ones.
    """
    fleet_apply(fleet=json.loads((out_dir / "fleet.json").read_text()), actor=actor)
    entries = delivery(out_dir=out_dir, in_order=in_order)
    return files_import(out_dir=out_dir, entries=entries, actor=actor, as_of=as_of)


@pytest.fixture(scope="module")
def simulation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("simulation")
    fleet = fleet_random(meters=30, seed=SEED)
    simulate(
        fleet=fleet,
        start=START,
        days=DAYS,
        out_dir=out,
        seed=SEED,
        window_days=5,
        anomaly_rate=10.0,  # one anomaly per unit and window: every kind, in every format
        resend_share=0.15,
    )
    return out


def _key(out: Path) -> dict[str, Any]:
    return json.loads((out / "answer_key.json").read_text())  # type: ignore[no-any-return]


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _readings(serials: list[str]) -> dict[Reading, tuple[int, int]]:
    """(serial, register, ts) -> (flags, quality) of the simulated meters' readings."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.serial, r.code, e.ts, e.flags, e.quality FROM meters_reading e "
            "JOIN meters_register r ON r.id = e.register_id "
            "JOIN meters_meter m ON m.id = r.meter_id WHERE m.serial = ANY(%s)",
            [serials],
        )
        return {(s, c, ts): (flags, quality) for s, c, ts, flags, quality in cursor.fetchall()}


def _import(out: Path, *, in_order: bool) -> ImportSummary:
    return simulation_import(out_dir=out, actor=SYSTEM, as_of=RECEIVED, in_order=in_order)


def test_the_simulation_has_every_format_and_every_kind_of_anomaly(simulation: Path) -> None:
    key = _key(simulation)
    assert set(key["formats"]) == {"csv", "json", "chirpstack", "dsmr", "espi"}
    planned = {(a["kind"], a["unit"]) for a in key["planned"]}
    assert {kind for kind, _ in planned} == set(KINDS)
    files = json.loads((simulation / "manifest.json").read_text())
    assert len(files["delivery"]) == len(files["files"]) + 1  # one file comes twice
    assert [f["name"] for f in files["files"]] != files["delivery"][: len(files["files"])]


def test_the_same_seed_gives_the_same_files(tmp_path: Path) -> None:
    def run(seed: int, folder: str) -> dict[str, bytes]:
        out = tmp_path / folder
        simulate(
            fleet=fleet_random(meters=12, seed=seed), start=START, days=3, out_dir=out,
            seed=seed, window_days=2, anomaly_rate=10.0,
        )  # fmt: skip
        return {p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    first = run(4, "a")
    assert len(first) > 5
    assert run(4, "b") == first
    assert run(5, "c")["answer_key.json"] != first["answer_key.json"]


@pytest.mark.django_db
def test_every_injected_anomaly_is_flagged_and_nothing_else(simulation: Path) -> None:
    key = _key(simulation)
    expected = key["expected"]
    fleet = json.loads((simulation / "fleet.json").read_text())
    fleet_apply(fleet=fleet, actor=SYSTEM)  # outside the savepoint: the same register ids
    with transaction.atomic():
        in_order = _import(simulation, in_order=True)
        in_order_checksum = readings_checksum()
        transaction.set_rollback(True)
    shuffled = _import(simulation, in_order=False)
    assert readings_checksum() == in_order_checksum  # the delivery order changes nothing

    for summary in (in_order, shuffled):
        assert (summary.failed, summary.rejected, summary.errors) == (0, 0, [])
        assert summary.duplicate_batches == expected["duplicate_batches"] == 1
        assert summary.seen == expected["rows_written"]
        assert summary.duplicate == expected["duplicates"]  # counted, and no row added
        assert summary.conflicting == expected["conflicts"]
    assert ReadingConflict.objects.count() == expected["conflicts"]

    found = _readings([m["serial"] for m in fleet["meters"]])
    assert len(found) == expected["readings"]
    predicted: dict[Reading, Rule] = defaultdict(lambda: Rule(0))
    for entry in key["anomalies"]:
        if "rule" in entry:
            predicted[entry["serial"], entry["register"], _ts(entry["ts"])] |= Rule[entry["rule"]]
    # Rule by rule: the readings flagged are exactly the readings the key names.
    for rule in Rule:
        flagged = {k for k, (flags, _) in found.items() if flags & rule}
        keyed = {k for k, rules in predicted.items() if rules & rule}
        assert flagged == keyed, rule.name
        if rule in CHECKED:
            assert keyed, f"no {rule.name} anomaly was injected"
    assert {k: Rule(found[k][0]) for k in predicted} == dict(predicted)
    for flags, quality in found.values():
        if flags & SUSPECT_RULES:
            assert quality == Quality.SUSPECT
        elif flags & Rule.ESTIMATED:
            assert quality == Quality.ESTIMATED
    assert sum(1 for flags, _ in found.values() if flags & Rule.ESTIMATED) == expected["estimated"]

    events = {
        (e.meter.serial, e.kind, e.occurred_at) for e in MeterEvent.objects.select_related("meter")
    }
    assert events == {
        (e["serial"], e["event"], _ts(e["ts"])) for e in key["anomalies"] if "event" in e
    }
    kinds = Counter(kind for _, kind, _ in events)
    assert kinds["leak"] and kinds["battery_low"]
    assert sum(n for kind, n in kinds.items() if kind.startswith("tamper")) > 0
    assert len(events) == expected["events"]


@pytest.mark.django_db
def test_clean_data_across_the_end_of_summer_time_raises_nothing(tmp_path: Path) -> None:
    # 25 October 2026: 02:00-03:00 in Amsterdam happens twice (DSMR tells them apart by S/W).
    start = dt.datetime(2026, 10, 23, 22, 0, tzinfo=dt.UTC)
    fleet = fleet_random(meters=10, seed=5)
    result = simulate(
        fleet=fleet, start=start, days=3, out_dir=tmp_path, seed=5, window_days=3,
        anomaly_rate=0.0, resend_share=0.0, redeliver=False,
    )  # fmt: skip
    summary = simulation_import(out_dir=tmp_path, actor=SYSTEM, as_of=start + dt.timedelta(days=4))
    assert (summary.failed, summary.rejected, summary.duplicate) == (0, 0, 0)
    found = _readings([m.serial for m in fleet.meters()])
    assert len(found) == result.readings == 3 * 96 * sum(len(m.registers) for m in fleet.meters())
    assert {Rule(flags) for flags, _ in found.values()} == {Rule(0)}
    day = RollupDaily.objects.filter(day=dt.date(2026, 10, 25)).first()
    assert day is not None and day.hours == 25


@pytest.mark.django_db
def test_the_command_writes_the_files_and_the_key_and_imports_them(tmp_path: Path) -> None:
    out = StringIO()
    call_command(
        "simulate_fleet",
        "--meters", "6",
        "--days", "3",
        "--seed", "3",
        "--start", "2026-03-01",
        "--anomaly-rate", "5",
        "--out", str(tmp_path),
        "--import",
        stdout=out,
    )  # fmt: skip
    key = _key(tmp_path)
    assert key["meters"] == 6 and key["days"] == 3
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert all((tmp_path / f["name"]).is_file() for f in manifest["files"])
    text = out.getvalue()
    assert "answer_key.json" in text and "0 failed" in text
    duplicates = [line for line in text.splitlines() if line.strip().startswith("duplicate ")]
    got, expected = duplicates[0].split()[1], duplicates[0].split()[-1]
    assert got == expected
