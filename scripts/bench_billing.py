#!/usr/bin/env python3
"""Bill run benchmark (docs/QUALITY.md: a bill run >= 1,000 bills/s, PDFs rendered separately).

`bench_bill_run(accounts)` runs inside a configured Django (the caller's database, e.g. the
throwaway database of `make bench`): it writes N postpaid accounts, each with a service point
on one flat tariff and a month of hourly rollups (N x 744 rows), set-wise in SQL; then times
`bill_run_execute` for that month and checks it issued N bills. Bills and ledger entries are
append-only, so run it only against a database that is dropped afterwards.

As a script it creates `smartmeter_bench_billing` (or BENCH_DATABASE_URL), migrates it, runs the
benchmark and drops the database again unless --keep:

    .venv/bin/python scripts/bench_billing.py --accounts 10000 [--tou]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from portal.lib.periods import next_month  # noqa: E402 - after the path is set

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smartmeter_bench_billing"
BENCH_MONTH = dt.date(2025, 3, 1)
FLAT = {"type": "flat", "rate": "2.5"}
TOU = {
    "type": "tou",
    "bands": [
        {"name": "peak", "days": "weekdays", "from": 8, "to": 22, "rate": "4.2"},
        {"name": "off-peak", "days": "weekdays", "from": 22, "to": 8, "rate": "1.8"},
        {"name": "weekend", "days": "weekends", "from": 0, "to": 24, "rate": "1.8"},
    ],
}


def _build(accounts: int, period_start: dt.date, structure: dict[str, Any], tag: str) -> None:
    from django.db import connection, transaction

    from billing.models import Tariff, TariffVersion

    with transaction.atomic():
        tariff = Tariff.objects.create(
            code=f"bench-{tag}",
            name="Bench",
            kind="electricity",
            currency="TWD",
            quantity_unit="kWh",
        )
        TariffVersion.objects.create(
            tariff=tariff,
            valid_from=dt.date(2000, 1, 1),
            standing_charge=Decimal("5.5"),
            tax_rate=Decimal("0.05"),
            structure=structure,
        )
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO tenancy_account (public_id, number, name, payment_mode, currency,
                    time_zone, created_at)
                SELECT gen_random_uuid(), 'B' || %s || '-' || i, 'Bench ' || i, 'postpaid', 'TWD',
                    'Asia/Taipei', now()
                FROM generate_series(1, %s) AS i
                """,
                [tag.upper(), accounts],
            )
            cursor.execute(
                """
                INSERT INTO meters_servicepoint (public_id, code, kind, address, time_zone,
                    created_at)
                SELECT gen_random_uuid(), 'SP-' || number, 'electricity', '', time_zone, now()
                FROM tenancy_account WHERE number LIKE %s
                """,
                [f"B{tag.upper()}-%"],
            )
            cursor.execute(
                """
                INSERT INTO billing_tariffassignment (account_id, service_point_id, tariff_id,
                    valid_from)
                SELECT a.id, s.id, %s, %s FROM tenancy_account a
                JOIN meters_servicepoint s ON s.code = 'SP-' || a.number
                WHERE a.number LIKE %s
                """,
                [tariff.pk, dt.date(2000, 1, 1), f"B{tag.upper()}-%"],
            )
            # A month of local hours (Asia/Taipei) with a varying load, some estimated. Hourly
            # rollups are day rows of arrays (meters migration 0014): one row per hour goes into
            # seed_hours, which meters_hourly_load() merges, each day row written once.
            cursor.execute(
                "CREATE TEMP TABLE seed_hours (service_point_id bigint, direction varchar(8), "
                "hour timestamptz, account_id bigint, consumption bigint, estimated bigint, "
                "suspect_count integer, reading_count integer)"
            )
            cursor.execute(
                """
                INSERT INTO seed_hours (service_point_id, direction, hour, account_id,
                    consumption, estimated, suspect_count, reading_count)
                SELECT s.id, 'import', h, a.id, 200 + (a.id * 7 + extract(hour FROM h))::int %% 900,
                    CASE WHEN (a.id + extract(day FROM h)::int) %% 97 = 0 THEN 100 ELSE 0 END,
                    0, 4
                FROM tenancy_account a
                JOIN meters_servicepoint s ON s.code = 'SP-' || a.number
                CROSS JOIN generate_series(
                    (%s::timestamp AT TIME ZONE 'Asia/Taipei'),
                    (%s::timestamp AT TIME ZONE 'Asia/Taipei') - interval '1 hour',
                    interval '1 hour') AS h
                WHERE a.number LIKE %s
                """,
                [period_start, next_month(period_start), f"B{tag.upper()}-%"],
            )
            cursor.execute("SELECT meters_hourly_load('seed_hours')")
            # The daily rollups the import derives from the hours.
            cursor.execute(
                """
                INSERT INTO meters_rollupdaily (service_point_id, direction, day, account_id,
                    consumption, estimated, suspect_count, reading_count, hours)
                SELECT h.service_point_id, h.direction, (h.hour AT TIME ZONE 'Asia/Taipei')::date,
                    h.account_id, sum(h.consumption), sum(h.estimated), 0, sum(h.reading_count),
                    count(*)
                FROM seed_hours h JOIN tenancy_account a ON a.id = h.account_id
                WHERE a.number LIKE %s
                GROUP BY 1, 2, 3, 4
                """,
                [f"B{tag.upper()}-%"],
            )
            cursor.execute("DROP TABLE seed_hours")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE meters_rollupdaily")
        cursor.execute("ANALYZE meters_hourlyday")
        cursor.execute("ANALYZE tenancy_account")
        cursor.execute("ANALYZE billing_tariffassignment")


def bench_bill_run(
    accounts: int, *, period_start: dt.date = BENCH_MONTH, tou: bool = False
) -> dict[str, Any]:
    """Build `accounts` postpaid accounts with a month of hourly rollups, run the month's bill
    run and return the timings: seconds, bills, bills_per_s (and build_seconds)."""
    from django.utils import timezone

    from billing.models import Bill, BillRun
    from billing.services.bills import bill_run_execute
    from portal.audit.actors import SystemActor

    if BillRun.objects.filter(period_start=period_start).exists():
        raise SystemExit(f"a bill run for {period_start} exists: use a fresh database")
    built = time.perf_counter()
    _build(accounts, period_start, TOU if tou else FLAT, tag=f"{period_start:%y%m}")
    build_seconds = time.perf_counter() - built
    started = time.perf_counter()
    run = bill_run_execute(
        period_start=period_start, actor=SystemActor("bench:billing"), as_of=timezone.now()
    )
    seconds = time.perf_counter() - started
    bills = Bill.objects.filter(run=run).count()
    if bills != accounts:
        raise SystemExit(f"the run issued {bills} bills for {accounts} accounts")
    return {
        "accounts": accounts,
        "tariff": "tou" if tou else "flat",
        "rollup_rows": accounts * 24 * (next_month(period_start) - period_start).days,
        "build_seconds": round(build_seconds, 2),
        "seconds": round(seconds, 2),
        "bills": bills,
        "bills_per_s": round(bills / seconds, 1),
        "goal_bills_per_s": 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--tou", action="store_true", help="a time-of-use tariff (hourly path)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.local")
    import psycopg
    from psycopg import sql

    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    import django
    from django.core.management import call_command

    django.setup()
    try:
        call_command("migrate", verbosity=0)
        print(json.dumps(bench_bill_run(args.accounts, tou=args.tou)))
    finally:
        if not args.keep:
            from django.db import connections

            connections.close_all()
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


if __name__ == "__main__":
    main()
