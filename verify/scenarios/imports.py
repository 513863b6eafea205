"""Imports under faults: a worker SIGKILLed and PostgreSQL crashed at each stage, overlapping
files at once, hostile files. Each ends compared with a clean import of the same rows, by
checksum of the readings and of the rollups, not only by count."""

from __future__ import annotations

import datetime as dt
import io
import time
from collections.abc import Callable
from dataclasses import dataclass

from verify.processes import Worker
from verify.report import Check, scenario
from verify.world import World, wait_for

START = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
QUARTERS = 4 * 24 * 35  # five weeks of quarter hours per meter


def meter_csv(meters: int, first: int = 0, last: int = QUARTERS) -> bytes:
    """Cumulative kWh registers, a row per meter and quarter hour in [first, last): the same
    (meter, quarter) always has the same value, so overlapping files agree where they meet."""
    lines = ["meter_serial,timestamp,value,unit,kind"]
    for meter in range(meters):
        value = 1000.0 + meter
        for q in range(last):
            value += 0.05 + (q % 11) * 0.01
            if q >= first:
                ts = START + dt.timedelta(minutes=15 * q)
                lines.append(f"V{meter:04d},{ts:%Y-%m-%dT%H:%M:%SZ},{value:.3f},kWh,electricity")
    return ("\n".join(lines) + "\n").encode()


def meters_for(world: World) -> int:
    return max(1, world.scale // QUARTERS)


@dataclass(frozen=True)
class Sums:
    readings: int
    distinct: int
    readings_md5: str
    hourly_md5: str
    daily_md5: str


def sums(world: World) -> Sums:
    """Checksums over natural keys (serials, codes, times), never ids, which differ by run."""
    readings, distinct, readings_md5 = world.row(
        """
        SELECT count(*), count(DISTINCT (r.register_id, r.ts)),
               md5(string_agg(concat_ws(',', m.serial, g.code, r.ts, r.value, r.delta,
                                        r.quality, r.flags), '|'
                              ORDER BY m.serial, g.code, r.ts))
        FROM meters_reading r
        JOIN meters_register g ON g.id = r.register_id
        JOIN meters_meter m ON m.id = g.meter_id
        """
    )
    rollup = """
        SELECT md5(string_agg(concat(sp.code, (to_jsonb(x) - 'id' - 'service_point_id'
                                               - 'account_id')::text), '|'
                              ORDER BY sp.code, x.direction, x.{at}))
        FROM {table} x JOIN meters_servicepoint sp ON sp.id = x.service_point_id
    """
    return Sums(
        readings=int(str(readings)),
        distinct=int(str(distinct)),
        readings_md5=str(readings_md5),
        hourly_md5=str(world.scalar(rollup.format(table="meters_rolluphourly", at="hour"))),
        daily_md5=str(world.scalar(rollup.format(table="meters_rollupdaily", at="day"))),
    )


def send(content: bytes, name: str, *, fmt: str = "csv") -> int:
    from django.utils import timezone

    from meters.services.imports import batch_create
    from portal.audit.actors import SystemActor

    batch = batch_create(
        source="command",
        fmt=fmt,
        content=io.BytesIO(content),
        original_name=name,
        actor=SystemActor("verify"),
        register_meters=True,
        as_of=timezone.now(),
    )
    return batch.pk


def batch_state(batch_id: int) -> dict[str, object]:
    from meters.models import ImportBatch

    return dict(
        ImportBatch.objects.filter(pk=batch_id)
        .values(
            "status",
            "stage",
            "chunks_done",
            "chunks_total",
            "attempts",
            "seen",
            "inserted",
            "duplicate",
            "conflicting",
            "rejected",
            "error",
        )
        .get()
    )


def sweep_until_done(world: World, batch_id: int, *, timeout: float = 600) -> None:
    """Run the sweeper every second, as beat would every 30, until the batch has ended."""
    from meters.tasks import import_sweeper_task

    finals = {"done", "done_with_rejections", "rejected", "failed", "duplicate"}
    deadline = time.monotonic() + timeout

    def ended() -> bool:
        if batch_state(batch_id)["status"] in finals:
            return True
        import_sweeper_task.apply()
        return False

    wait_for(ended, what=f"batch {batch_id} to end", timeout=deadline - time.monotonic(), every=1)


def staging_left(world: World) -> int:
    return int(
        str(
            world.scalar(
                "SELECT count(*) FROM pg_class WHERE relname LIKE 'meters_stage%%' "
                "AND relkind = 'r'"
            )
        )
    )


def clean(world: World) -> Sums:
    """The reference: the same file imported with no fault (once per run, then remembered)."""
    key = f"clean-{world.scale}"
    if key not in world.memo:
        worker = world.worker()
        batch_id = send(meter_csv(meters_for(world)), "clean.csv")
        sweep_until_done(world, batch_id)
        world.memo[key] = sums(world)
        worker.stop()
        world.fresh()
    reference = world.memo[key]
    assert isinstance(reference, Sums)  # noqa: S101 - set just above
    return reference


STAGES: dict[str, Callable[[dict[str, object]], bool]] = {
    "parsing": lambda b: b["stage"] == "parsing" and b["status"] == "running",
    "validating": lambda b: b["stage"] == "validating",
    # Some chunks merged, some not: the case that lost two thirds of a file.
    "merging": lambda b: (
        b["stage"] == "merging"
        and 2 <= int(str(b["chunks_done"])) < int(str(b["chunks_total"])) - 1
    ),
}


def _outcome_checks(world: World, batch_id: int, reference: Sums, *, attempts: int) -> list[Check]:
    final = batch_state(batch_id)
    got = sums(world)
    rows = reference.readings
    return [
        Check("batch status", "done", final["status"]),
        Check("attempts", attempts, final["attempts"]),
        Check("rows seen = inserted", (rows, rows), (final["seen"], final["inserted"])),
        Check("readings stored", rows, got.readings),
        Check("readings duplicated", 0, got.readings - got.distinct),
        Check("readings checksum = clean import", reference.readings_md5, got.readings_md5),
        Check("hourly rollups checksum = clean import", reference.hourly_md5, got.hourly_md5),
        Check("daily rollups checksum = clean import", reference.daily_md5, got.daily_md5),
        Check("staging tables left", 0, staging_left(world)),
    ]


def _md5_short(checks: list[Check]) -> list[Check]:
    """Checksums are compared in full but shown by their first 12 hex digits."""
    return [
        Check(c.figure, str(c.expected)[:12], str(c.observed)[:12])
        if "checksum" in c.figure and c.ok
        else c
        for c in checks
    ]


def _worker_killed_at(stage: str) -> Callable[[World], list[Check]]:
    def run(world: World) -> list[Check]:
        reference = clean(world)
        first = world.worker()
        batch_id = send(meter_csv(meters_for(world)), f"kill-{stage}.csv")
        seen: dict[str, object] = {}

        def at_stage() -> bool:
            seen.update(batch_state(batch_id))
            return STAGES[stage](seen)

        wait_for(at_stage, what=f"stage {stage}")
        first.kill()
        world.worker()
        sweep_until_done(world, batch_id)
        checks = [Check("stage when killed", stage, seen["stage"])]
        return checks + _md5_short(_outcome_checks(world, batch_id, reference, attempts=2))

    return run


def _database_crashed_at(stage: str) -> Callable[[World], list[Check]]:
    def run(world: World) -> list[Check]:
        reference = clean(world)
        worker = world.worker()
        batch_id = send(meter_csv(meters_for(world)), f"crash-{stage}.csv")
        seen: dict[str, object] = {}

        def at_stage() -> bool:
            seen.update(batch_state(batch_id))
            return STAGES[stage](seen)

        wait_for(at_stage, what=f"stage {stage}")
        world.crash_database()
        world.restart_database()
        sweep_until_done(world, batch_id)
        checks = [Check("stage when PostgreSQL crashed", stage, seen["stage"])]
        checks += _md5_short(_outcome_checks(world, batch_id, reference, attempts=2))
        checks.append(Check("worker still serving", True, worker.alive))
        return checks

    return run


for _stage in STAGES:
    scenario(
        f"import: worker killed while {_stage}",
        group="imports",
        fault="SIGKILL of the worker and its pool",
        fast=_stage == "merging",
    )(_worker_killed_at(_stage))
    scenario(
        f"import: PostgreSQL crashed while {_stage}",
        group="imports",
        fault="SIGKILL of the postmaster and backends",
        fast=_stage in ("validating", "merging"),
    )(_database_crashed_at(_stage))


@scenario(
    "import: Redis down while a worker runs an import",
    group="imports",
    fault="Redis SIGKILLed mid-merge, back after the import ended",
    fast=True,
)
def redis_outage(world: World) -> list[Check]:
    reference = clean(world)
    worker = world.worker()
    batch_id = send(meter_csv(meters_for(world)), "redis-outage.csv")
    seen: dict[str, object] = {}

    def at_stage() -> bool:
        seen.update(batch_state(batch_id))
        return STAGES["merging"](seen)

    wait_for(at_stage, what="stage merging")
    world.redis.stop()
    # The reported failure: the task ends while the broker is away, so its late acknowledgement
    # has no connection to go to.
    wait_for(
        lambda: batch_state(batch_id)["status"] != "running",
        what="the import to end without Redis",
        every=0.2,
    )
    time.sleep(2)
    world.redis.start()
    sweep_until_done(world, batch_id)
    checks = [Check("stage when Redis went down", "merging", seen["stage"])]
    checks += _md5_short(_outcome_checks(world, batch_id, reference, attempts=1))
    # A task sent after the outage: the same worker must take it (no one restarts it here).
    later = send(meter_csv(1, 0, 96).replace(b"V0000", b"LATE1"), "after-the-outage.csv")
    try:
        wait_for(
            lambda: batch_state(later)["status"] == "done", what="the later import", timeout=90
        )
        later_status = "done"
    except TimeoutError:
        later_status = str(batch_state(later)["status"])
    checks.append(Check("worker still serving after the outage", True, worker.alive))
    checks.append(Check("an import sent after the outage", "done", later_status))
    return checks


def _uninstalled(world: World) -> int:
    """Readings at no service point: no installation of their meter covers them, so no rollup,
    chart or bill ever counts them."""
    return int(
        str(
            world.scalar(
                """
                SELECT count(*) FROM meters_reading r
                JOIN meters_register g ON g.id = r.register_id
                WHERE NOT EXISTS (
                    SELECT 1 FROM meters_meterinstallation i
                    WHERE i.meter_id = g.meter_id AND i.installed_at < r.ts
                      AND (i.removed_at IS NULL OR r.ts <= i.removed_at))
                """
            )
        )
    )


def _ready(worker: Worker) -> bool:
    return worker.log.exists() and b" ready." in worker.log.read_bytes()


def _overlapping(*, at_once: bool, seeded: bool = False) -> Callable[[World], list[Check]]:
    """The first two thirds and the last two thirds of the clean file: the middle third is in
    both, with the same values, and the union is the clean file. Sent together to two workers,
    or the later file first and the earlier once it is done (an out-of-order delivery: the
    earlier file's rows go in before readings that are already stored)."""

    def run(world: World) -> list[Check]:
        from meters.tasks import import_sweeper_task

        reference = clean(world)
        meters = meters_for(world)
        third = QUARTERS // 3
        files = [meter_csv(meters, 0, 2 * third), meter_csv(meters, third, QUARTERS)]
        names = ["first two thirds.csv", "last two thirds.csv"]
        checks = []
        if at_once:
            workers = [world.worker(), world.worker()]
            wait_for(
                lambda: all(_ready(w) for w in workers), what="two workers", timeout=120, every=0.2
            )
            seed_inserted = 0
            if seeded:
                seed = send(meter_csv(meters, 0, 1), "first quarter hour.csv")
                sweep_until_done(world, seed)
                seed_inserted = int(str(batch_state(seed)["inserted"]))
            ids = [send(files[0], names[0]), send(files[1], names[1])]
            together = False

            def both_ended() -> bool:
                nonlocal together
                states = [batch_state(i)["status"] for i in ids]
                together = together or states == ["running", "running"]
                if "queued" in states:
                    import_sweeper_task.apply()  # a retried attempt waits for the sweeper
                return all(s not in ("queued", "running") for s in states)

            wait_for(both_ended, what="both batches to end", timeout=1800, every=0.05)
            checks.append(Check("both running at the same time", True, together))
            for batch_id in ids:
                sweep_until_done(world, batch_id)  # a batch the sweeper must retry, if any
        else:
            seed_inserted = 0
            world.worker()
            later = send(files[1], names[1])
            sweep_until_done(world, later)
            earlier = send(files[0], names[0])
            sweep_until_done(world, earlier)
            ids = [earlier, later]
        first, second = (batch_state(i) for i in ids)
        got = sums(world)
        union = reference.readings
        rows = [f.count(b"\n") - 1 for f in files]

        def total(key: str) -> int:
            return int(str(first[key])) + int(str(second[key]))

        return checks + _md5_short(
            [
                Check("batch states", ("done", "done"), (first["status"], second["status"])),
                Check("rows seen", (rows[0], rows[1]), (first["seen"], second["seen"])),
                Check(
                    "inserted A + inserted B = union",
                    union,
                    total("inserted") + seed_inserted,
                ),
                Check(
                    "duplicates A + B = overlap",
                    meters * third + seed_inserted,
                    total("duplicate"),
                ),
                Check("conflicting, rejected", (0, 0), (total("conflicting"), total("rejected"))),
                Check("readings stored", union, got.readings),
                Check("readings duplicated", 0, got.readings - got.distinct),
                Check("readings before their meter's installation", 0, _uninstalled(world)),
                Check("readings checksum = clean import", reference.readings_md5, got.readings_md5),
                Check(
                    "hourly rollups checksum = clean import", reference.hourly_md5, got.hourly_md5
                ),
                Check("daily rollups checksum = clean import", reference.daily_md5, got.daily_md5),
                Check("staging tables left", 0, staging_left(world)),
            ]
        )

    return run


scenario(
    "import: overlapping files at once",
    group="imports",
    fault="two files over overlapping periods of the same meters, two workers",
)(_overlapping(at_once=True))
scenario(
    "import: overlapping files at once, meters known",
    group="imports",
    fault="two files over overlapping periods of the same meters, two workers",
)(_overlapping(at_once=True, seeded=True))
scenario(
    "import: overlapping files, the later one first",
    group="imports",
    fault="out-of-order delivery of overlapping files",
)(_overlapping(at_once=False))
