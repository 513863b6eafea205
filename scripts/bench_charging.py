"""`make bench`, billing part: the daily prepaid charge for N accounts.

The bar is in docs/QUALITY.md (100k accounts < 60 s).

Builds N prepaid accounts set-wise in SQL (each with a wallet, a supplied service point, a
time-of-use tariff and a day of hourly rollups: 24 N rows), then times the product's real
charging service for that day, and a second run that must charge nothing. Run standalone with
`python scripts/bench_charging.py --accounts 100000` or through `make bench`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE_DIR))

from benchkit import drop_database, prepare_database  # noqa: E402 - after the path is set

from portal.lib.periods import local_midnight  # noqa: E402 - after the path is set

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/smartmeter_bench_billing"
DAY = dt.date(2026, 5, 4)
TZ = "Asia/Taipei"

TOU = (
    '{"type": "tou", "bands": ['
    '{"name": "peak", "days": "weekdays", "from": 9, "to": 21, "rate": "4.2"},'
    '{"name": "off-peak", "days": "weekdays", "from": 21, "to": 9, "rate": "1.8"},'
    '{"name": "weekend", "days": "weekends", "from": 0, "to": 24, "rate": "1.8"}]}'
)

SETUP = """
INSERT INTO billing_tariff (public_id, code, name, kind, currency, quantity_unit, created_at)
VALUES (gen_random_uuid(), 'bench-tou', 'Bench TOU', 'electricity', 'TWD', 'kWh', now());
INSERT INTO billing_tariffversion (tariff_id, valid_from, standing_charge, tax_rate, structure,
                                   created_at)
SELECT id, '2026-01-01', 3.5, 0.05, %(tou)s::jsonb, now() FROM billing_tariff;

INSERT INTO tenancy_account (public_id, number, name, payment_mode, currency, time_zone,
                             created_at)
SELECT gen_random_uuid(), 'B-' || lpad(n::text, 8, '0'), 'Bench ' || n, 'prepaid', 'TWD',
       %(tz)s, now()
FROM generate_series(1, %(n)s) n;

INSERT INTO meters_servicepoint (public_id, code, kind, address, time_zone, created_at)
SELECT gen_random_uuid(), 'BSP-' || a.number, 'electricity', '', %(tz)s, now()
FROM tenancy_account a;

INSERT INTO meters_supply (account_id, service_point_id, start)
SELECT a.id, sp.id, '2026-01-01T00:00:00+08:00'
FROM tenancy_account a JOIN meters_servicepoint sp ON sp.code = 'BSP-' || a.number;

INSERT INTO billing_tariffassignment (account_id, service_point_id, tariff_id, valid_from)
SELECT s.account_id, s.service_point_id, t.id, '2026-01-01'
FROM meters_supply s CROSS JOIN billing_tariff t;

INSERT INTO billing_ledgeraccount (code, kind, currency, name)
SELECT 'wallet:' || a.id || ':TWD', 'wallet', 'TWD', 'wallet ' || a.id FROM tenancy_account a;

INSERT INTO billing_wallet (account_id, ledger_account_id, currency, balance, emergency_credit,
                            updated_at)
SELECT a.id, l.id, 'TWD', 0, 10000, now()
FROM tenancy_account a JOIN billing_ledgeraccount l ON l.code = 'wallet:' || a.id || ':TWD';

-- Hourly rollups are day rows of arrays (meters migration 0014): one row per hour here,
-- merged by meters_hourly_load(), each day row written once.
CREATE TEMP TABLE seed_hours (service_point_id bigint, direction varchar(8), hour timestamptz,
                              account_id bigint, consumption bigint, estimated bigint,
                              suspect_count integer, reading_count integer);
INSERT INTO seed_hours (service_point_id, direction, hour, account_id, consumption,
                                 estimated, suspect_count, reading_count)
SELECT s.service_point_id, 'import', %(start)s::timestamptz + make_interval(hours => h),
       s.account_id, 200 + (s.account_id * 7 + h * 13) %% 900, 0, 0, 4
FROM meters_supply s CROSS JOIN generate_series(0, 23) h;
SELECT meters_hourly_load('seed_hours');
DROP TABLE seed_hours;
ANALYZE;
"""


def _setup(accounts: int) -> float:
    from django.db import connection

    start = local_midnight(DAY, TZ)
    began = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(SETUP, {"n": accounts, "tz": TZ, "tou": TOU, "start": start})
    return time.perf_counter() - began


def bench_charging(accounts: int) -> dict[str, Any]:
    """Set up `accounts` prepaid accounts in the configured database and charge them a day."""
    from django.db import connection

    from billing.models import DailyCharge, Posting, Wallet
    from billing.services.charging import prepaid_charge_day
    from portal.audit.actors import SystemActor

    setup = _setup(accounts)
    actor = SystemActor("command:bench")
    now = dt.datetime(2026, 5, 5, 1, tzinfo=dt.UTC)
    began = time.perf_counter()
    run = prepaid_charge_day(day=DAY, time_zone=TZ, actor=actor, as_of=now)
    seconds = time.perf_counter() - began
    began = time.perf_counter()
    again = prepaid_charge_day(day=DAY, time_zone=TZ, actor=actor, as_of=now)
    rerun = time.perf_counter() - began
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM billing_wallet w WHERE w.balance <> -coalesce((SELECT "
            "sum(p.amount) FROM billing_posting p WHERE p.ledger_account_id = "
            "w.ledger_account_id), 0)"
        )
        (mismatched,) = cursor.fetchone()
    return {
        "accounts": accounts,
        "setup_seconds": setup,
        "charged": run.charged,
        "seconds": seconds,
        "per_second": run.charged / seconds if seconds else 0.0,
        "rerun_charged": again.charged,
        "rerun_seconds": rerun,
        "charges": DailyCharge.objects.count(),
        "postings_sum": sum(Posting.objects.values_list("amount", flat=True)),
        "wallets_off": mismatched,
        "wallets": Wallet.objects.count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("BENCH_BILLING_DATABASE_URL", DEFAULT_URL)
    prepare_database(url)
    os.environ.update(
        {
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "portal.settings.local",
            "DJANGO_DEBUG": "0",
            "CELERY_TASK_ALWAYS_EAGER": "1",
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()
    try:
        result = bench_charging(args.accounts)
    finally:
        from django.db import connection

        connection.close()
        if not args.keep:
            drop_database(url)
    # The goal is for 100k accounts; a smaller run is scaled linearly (and says so).
    projected = result["seconds"] * 100_000 / max(args.accounts, 1)
    ok = projected < 60 and result["rerun_charged"] == 0 and result["wallets_off"] == 0
    scaled = "" if args.accounts == 100_000 else f", {projected:.0f} s scaled to 100k"
    print(
        f"daily prepaid charge: {result['charged']:,} of {result['accounts']:,} accounts in "
        f"{result['seconds']:.1f} s = {result['per_second']:,.0f} accounts/s{scaled} (goal: 100k "
        f"in < 60 s: {'PASS' if ok else 'BELOW'}); re-run charged {result['rerun_charged']} in "
        f"{result['rerun_seconds']:.1f} s; wallets whose balance differs from their postings: "
        f"{result['wallets_off']}; sum of all postings: {result['postings_sum']} "
        f"(set-up of accounts and rollups in SQL: {result['setup_seconds']:.1f} s)"
    )
    # A benchmark reports; it fails only when the charge broke an invariant.
    return 0 if result["rerun_charged"] == 0 and result["wallets_off"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
