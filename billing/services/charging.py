"""The daily prepaid charge: yesterday's consumption and standing charges, off every wallet,
and yesterday's export credit, onto it.

Set-based over all prepaid accounts of one time zone: the supplies to charge come from one
query, their hourly usage from one query per chunk, prices from billing.costs (the one
computation every page, CSV and bill uses) in memory, and each chunk of accounts is written in
one transaction by three statements (journal entries, postings, charges). One charge per
(account, service point, local day) is enforced by constraints: the journal entries'
idempotency keys and DailyCharge's unique key, so a re-run, or two runs at once, charge
nothing twice.

Which day and which account pays (billing.costs states each rule once):
- consumption is charged to the account the hourly rollups name (the supply of each hour);
- the standing charge of a day goes to the supply that holds the service point at the start
  of the day, so a move day is paid once, by the leaving occupant;
- tiers count the month's imported consumption since the 1st, from the rollups;
- a day's charge and its export credit are two journal entries ("daily charge", "export
  credit"), never netted: a day that exports more than it costs raises the balance;
- readings that arrive after a day was charged are not charged again (the bill-like true-up of
  late data is left for later; the charge records what it was based on).

The hourly task runs the charge as a PrepaidChargeRun, under a session advisory lock of its
own: a worker killed in the middle leaves the run `running` with its lock free, and the
sweeper (beat, every 30 s) queues it again within a minute, instead of the broker's visibility
timeout (5 minutes) and the next hourly run. The chunks it committed stay charged; the rest
is charged once, as every re-run is.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import zoneinfo
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from billing.costs import DayCost, price_day
from billing.models import JournalEntry, LedgerAccount, PrepaidChargeRun, TariffVersion
from billing.pricing import structure_of
from billing.selectors import CHARGE_RUN_LOCK, hourly_usage, imported_between
from billing.services.ledger import ledger_account_get
from billing.services.supply import supply_disconnect_due
from billing.windows import tariff_windows, window_on
from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.money import format_minor
from portal.lib.periods import local_day_bounds, local_midnight, month_start

logger = logging.getLogger(__name__)


@dataclass
class ChargeRun:
    """What one run charged, for the task's log and the audit entry."""

    day: dt.date
    time_zone: str
    charged: int = 0
    already: int = 0
    without_tariff: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    credits: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Target:
    account_id: int
    service_point_id: int
    kind: str
    currency: str
    wallet_ledger_id: int
    version_id: int | None
    unit: str
    standing_days: int


_TARGETS = """
SELECT DISTINCT ON (a.id, s.service_point_id)
       a.id, s.service_point_id, sp.kind, a.currency, w.ledger_account_id,
       CASE WHEN s.start <= %(start)s THEN 1 ELSE 0 END
FROM tenancy_account a
JOIN billing_wallet w ON w.account_id = a.id
JOIN meters_supply s ON s.account_id = a.id AND s.start < %(end)s
                    AND (s."end" IS NULL OR s."end" > %(start)s)
JOIN meters_servicepoint sp ON sp.id = s.service_point_id
WHERE a.payment_mode = 'prepaid' AND a.time_zone = %(tz)s
  AND (a.closed_at IS NULL OR a.closed_at > %(start)s)
  -- A day before yesterday is charged only to an account that was being charged before it:
  -- a run that stopped halfway is completed, but an account that joins prepaid today is not
  -- charged for days a bill may already cover.
  AND (NOT %(catch_up)s OR EXISTS (
        SELECT 1 FROM billing_dailycharge c
        WHERE c.account_id = a.id AND c.day < %(day)s AND c.day >= %(since)s))
  AND NOT EXISTS (SELECT 1 FROM billing_dailycharge c
                  WHERE c.account_id = a.id AND c.service_point_id = s.service_point_id
                    AND c.day = %(day)s)
ORDER BY a.id, s.service_point_id, s.start DESC
"""


def prepaid_charge_day(
    *,
    day: dt.date,
    time_zone: str,
    actor: Actor,
    as_of: dt.datetime,
    chunk: int | None = None,
    catch_up_since: dt.date | None = None,
) -> ChargeRun:
    """Charge every prepaid supply of accounts in `time_zone` for the local `day`.

    With `catch_up_since`, only accounts charged on some day from then until before `day`: the
    completion of a day that an interrupted run left half charged.
    """
    start, end = local_day_bounds(day, time_zone)
    with connection.cursor() as cursor:
        cursor.execute(
            _TARGETS,
            {
                "start": start,
                "end": end,
                "day": day,
                "tz": time_zone,
                "catch_up": catch_up_since is not None,
                "since": catch_up_since or day,
            },
        )
        rows = cursor.fetchall()
    # The version in force that day: the bill's rule (billing.windows).
    windows = tariff_windows(
        account_ids=sorted({row[0] for row in rows}), first=day, stop=day + dt.timedelta(days=1)
    ).by_supply
    targets = []
    for account_id, sp_id, kind, currency, ledger_id, standing_days in rows:
        window = window_on(windows.get((account_id, sp_id), []), day)
        targets.append(
            _Target(
                account_id,
                sp_id,
                kind,
                currency,
                ledger_id,
                window.version.pk if window else None,
                window.unit if window else "",
                standing_days,
            )
        )
    run = ChargeRun(day=day, time_zone=time_zone)
    size = chunk or settings.PREPAID_CHARGE_CHUNK
    accounts: list[int] = []
    by_account: dict[int, list[_Target]] = defaultdict(list)
    for target in targets:
        if target.account_id not in by_account:
            accounts.append(target.account_id)
        by_account[target.account_id].append(target)
    for i in range(0, len(accounts), size):
        part = [t for a in accounts[i : i + size] for t in by_account[a]]
        _charge_chunk(
            part, day=day, start=start, end=end, tz=time_zone, run=run, actor=actor, as_of=as_of
        )
    return run


def _charge_chunk(
    targets: list[_Target],
    *,
    day: dt.date,
    start: dt.datetime,
    end: dt.datetime,
    tz: str,
    run: ChargeRun,
    actor: Actor,
    as_of: dt.datetime,
) -> None:
    account_ids = sorted({t.account_id for t in targets})
    usage = hourly_usage(account_ids=account_ids, start=start, end=end, time_zone=tz)
    version_ids = {t.version_id for t in targets if t.version_id is not None}
    versions = {v.pk: v for v in TariffVersion.objects.filter(pk__in=version_ids)}
    tiered = sorted(
        {t.account_id for t in targets if t.version_id and _tiered(versions[t.version_id])}
    )
    before = (
        imported_between(
            account_ids=tiered,
            start=local_midnight(month_start(day), tz),
            end=start,
        )
        if tiered and day.day > 1
        else {}
    )
    entries: list[dict[str, Any]] = []
    postings: list[tuple[str, int, int]] = []  # key, ledger account, amount
    charges: list[dict[str, Any]] = []
    ledgers: dict[tuple[str, str], int] = {}

    def ledger(kind: str, currency: str, key: str = "") -> int:
        if (kind + key, currency) not in ledgers:
            ledgers[(kind + key, currency)] = ledger_account_get(
                kind=kind, currency=currency, key=key
            ).pk
        return ledgers[(kind + key, currency)]

    for target in targets:
        if target.version_id is None:
            run.without_tariff += 1
            continue
        version = versions[target.version_id]
        key = (target.account_id, target.service_point_id)
        cost = price_day(
            version,
            usage.get(key, []),
            day=day,
            standing=bool(target.standing_days),
            month_to_date=before.get(key, 0),
            currency=target.currency,
            unit=target.unit,
        )
        row = _book(target, cost, day=day, entries=entries, postings=postings, ledger=ledger)
        charges.append(row)
    # Rows travel as one JSON document per statement: psycopg quotes array elements one by
    # one in Python, which cost more than pricing the chunk (measured by the bench profile).
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO billing_journalentry (kind, account_id, currency, memo, idempotency_key,
                effective_date, created_at, created_by_label)
            SELECT t.kind, t.a, t.c, t.m, t.k, %s, %s, %s
            FROM jsonb_to_recordset(%s::jsonb) AS t(k text, kind text, a bigint, c text, m text)
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING idempotency_key, id
            """,
            [day, as_of, actor.label[:254], json.dumps(entries)],
        )
        entry_ids = dict(cursor.fetchall())
        mine = [
            {"e": entry_ids[key], "l": ledger_id, "a": amount}
            for key, ledger_id, amount in postings
            if key in entry_ids and amount
        ]
        if mine:
            cursor.execute(
                "INSERT INTO billing_posting (entry_id, ledger_account_id, amount) "
                "SELECT t.e, t.l, t.a FROM jsonb_to_recordset(%s::jsonb) "
                "AS t(e bigint, l bigint, a bigint)",
                [json.dumps(mine)],
            )
        # A charge whose entries another run posted first is that run's to record.
        rows = [c for c in charges if all(c[k] is None or c[k] in entry_ids for k in ("k", "ck"))]
        for row in rows:
            row["e"] = entry_ids.get(row["k"]) if row["k"] else None
            row["ce"] = entry_ids.get(row["ck"]) if row["ck"] else None
        cursor.execute(
            """
            INSERT INTO billing_dailycharge (entry_id, credit_entry_id, account_id,
                service_point_id, day, tariff_version_id, consumption, export, estimated, net,
                tax, total, credit, lines, created_at)
            SELECT t.e, t.ce, t.a, t.sp, %s, t.v, t.q, t.x, t.est, t.n, t.tx, t.tot, t.cr, t.l,
                   %s
            FROM jsonb_to_recordset(%s::jsonb) AS t(e bigint, ce bigint, a bigint, sp bigint,
                v bigint, q bigint, x bigint, est bigint, n bigint, tx bigint, tot bigint,
                cr bigint, l jsonb)
            ON CONFLICT (account_id, service_point_id, day) DO NOTHING
            RETURNING total
            """,
            [day, as_of, json.dumps(rows)],
        )
        charged = len(cursor.fetchall())
        run.charged += charged
        run.already += len(charges) - charged
        totals: dict[str, int] = defaultdict(int)
        credits: dict[str, int] = defaultdict(int)
        for row in rows:
            totals[row["c"]] += row["tot"]
            credits[row["c"]] += row["cr"]
        for currency, total in totals.items():
            run.totals[currency] = run.totals.get(currency, 0) + total
        for currency, credit in credits.items():
            run.credits[currency] = run.credits.get(currency, 0) + credit
        if charged:
            audit_record(
                actor=actor,
                event=AuditEvent.PREPAID_CHARGED,
                data={
                    "day": day.isoformat(),
                    "time_zone": tz,
                    "charges": charged,
                    "total": ", ".join(format_minor(v, k) for k, v in sorted(totals.items())),
                    "export_credit": ", ".join(
                        format_minor(v, k) for k, v in sorted(credits.items()) if v
                    ),
                },
            )


def _book(
    target: _Target,
    cost: DayCost,
    *,
    day: dt.date,
    entries: list[dict[str, Any]],
    postings: list[tuple[str, int, int]],
    ledger: Callable[..., int],
) -> dict[str, Any]:
    """Add a day's charge and export credit entries (each only when not zero) to `entries`
    and `postings`; return the DailyCharge row that records them."""
    where = f"{target.account_id}:{target.service_point_id}:{day.isoformat()}"
    charge_key, credit_key = f"charge:{where}", f"export:{where}"
    if cost.charge:
        entries.append(
            {
                "k": charge_key,
                "kind": JournalEntry.Kind.CHARGE,
                "a": target.account_id,
                "c": target.currency,
                "m": f"daily charge {day}",
            }
        )
        postings.append((charge_key, target.wallet_ledger_id, cost.charge))
        revenue = ledger(LedgerAccount.Kind.REVENUE, target.currency, target.kind)
        postings.append((charge_key, revenue, -cost.charge_net))
        if cost.tax:
            postings.append(
                (charge_key, ledger(LedgerAccount.Kind.TAX, target.currency), -cost.tax)
            )
    if cost.credit:
        entries.append(
            {
                "k": credit_key,
                "kind": JournalEntry.Kind.EXPORT_CREDIT,
                "a": target.account_id,
                "c": target.currency,
                "m": f"export credit {day}",
            }
        )
        postings.append((credit_key, target.wallet_ledger_id, -cost.credit))
        # The energy bought back lowers the revenue of that utility, on an account of its own.
        bought = ledger(LedgerAccount.Kind.REVENUE, target.currency, f"{target.kind}-export")
        postings.append((credit_key, bought, cost.credit))
    return {
        "k": charge_key if cost.charge else None,
        "ck": credit_key if cost.credit else None,
        "a": target.account_id,
        "sp": target.service_point_id,
        "v": target.version_id,
        "q": cost.imported,
        "x": cost.exported,
        "est": cost.estimated,
        "n": cost.charge_net,
        "tx": cost.tax,
        "tot": cost.charge,
        "cr": cost.credit,
        "l": [line.as_json() for line in cost.lines],
        "c": target.currency,
    }


def _tiered(version: TariffVersion) -> bool:
    return any(plan.tiers for plan in structure_of(version).plans_by_month.values())


def prepaid_charge_due(*, as_of: dt.datetime, actor: Actor) -> list[ChargeRun]:
    """Charge yesterday for every time zone whose local clock has passed PREPAID_CHARGE_HOUR
    (so that the night's imports have landed), then queue the disconnections now due.

    The PREPAID_CHARGE_CATCH_UP_DAYS days before yesterday are completed first, oldest first,
    for the accounts charged before them: a run killed halfway through a day would otherwise
    leave the rest of its accounts uncharged for that day for good once the next day began.
    Only runs that found something to charge are returned.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT a.time_zone FROM tenancy_account a "
            "JOIN billing_wallet w ON w.account_id = a.id ORDER BY 1"
        )
        zones = [row[0] for row in cursor.fetchall()]
    runs = []
    for name in zones:
        local = as_of.astimezone(zoneinfo.ZoneInfo(name))
        if local.hour < settings.PREPAID_CHARGE_HOUR:
            continue
        yesterday = local.date() - dt.timedelta(days=1)
        since = yesterday - dt.timedelta(days=settings.PREPAID_CHARGE_CATCH_UP_DAYS)
        for back in range(settings.PREPAID_CHARGE_CATCH_UP_DAYS, 0, -1):
            run = prepaid_charge_day(
                day=yesterday - dt.timedelta(days=back),
                time_zone=name,
                actor=actor,
                as_of=as_of,
                catch_up_since=since,
            )
            if run.charged or run.without_tariff:
                runs.append(run)
        runs.append(prepaid_charge_day(day=yesterday, time_zone=name, actor=actor, as_of=as_of))
    supply_disconnect_due(as_of=as_of, actor=actor)
    return runs


# --- Runs: the hourly charge, resumable after its worker died --------------------------------


def _try_lock(run_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [CHARGE_RUN_LOCK + run_id])
        (got,) = cursor.fetchone()
    return bool(got)


def _unlock(run_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s)", [CHARGE_RUN_LOCK + run_id])


def prepaid_charge_run(*, as_of: dt.datetime, actor: Actor) -> PrepaidChargeRun:
    """Record a run of the daily charge as of `as_of` and run it (prepaid_charge_due).

    The run is committed, with its lock already held by this session, before anything is
    charged: from then on a worker that dies leaves it for the sweeper to resume.
    """
    with transaction.atomic():
        run = PrepaidChargeRun.objects.create(
            as_of=as_of, started_at=as_of, created_by_label=actor.label[:254]
        )
        # A session lock, taken in the transaction that creates the run: it outlives the
        # commit, and the sweeper never sees the run without it while this session lives.
        _try_lock(run.pk)
    try:
        _run_attempt(run, actor=actor, as_of=as_of)
    finally:
        _unlock(run.pk)
    return run


def prepaid_charge_run_resume(
    *, run_id: int, actor: Actor, as_of: dt.datetime
) -> PrepaidChargeRun | None:
    """Run the rest of a run whose worker died (its own `as_of` still says which days are
    due); None if another worker is running it.

    A finished run is returned as it is, so a duplicate delivery changes nothing. A run started
    PREPAID_CHARGE_MAX_ATTEMPTS times without ever finishing fails (its worker died in each):
    the next hourly run, and its catch-up of the days before, charge what it left.
    """
    if not _try_lock(run_id):
        return None
    try:
        run = PrepaidChargeRun.objects.get(pk=run_id)
        if run.status != PrepaidChargeRun.Status.RUNNING:
            return run
        if run.attempts >= settings.PREPAID_CHARGE_MAX_ATTEMPTS:
            run.status = PrepaidChargeRun.Status.FAILED
            run.error = (
                f"The charge run was started {run.attempts} times and never finished: the "
                "worker running it stopped each time."
            )
            run.finished_at = as_of
            run.save(update_fields=["status", "error", "finished_at"])
            logger.error("prepaid charge run %s: %s", run.pk, run.error)
            return run
        _run_attempt(run, actor=actor, as_of=as_of)
        return run
    finally:
        _unlock(run_id)


def _run_attempt(run: PrepaidChargeRun, *, actor: Actor, as_of: dt.datetime) -> None:
    """One attempt, counted before it starts (a worker killed in it has used it up); `now`
    is when it started."""
    run.attempts += 1
    run.save(update_fields=["attempts"])
    try:
        runs = prepaid_charge_due(as_of=run.as_of, actor=actor)
    except Exception as error:
        run.status = PrepaidChargeRun.Status.FAILED
        run.error = f"{type(error).__name__}: {error}"
        run.finished_at = as_of
        run.save(update_fields=["status", "error", "finished_at"])
        raise
    run.charged += sum(day.charged for day in runs)
    run.status = PrepaidChargeRun.Status.DONE
    run.finished_at = as_of
    run.save(update_fields=["charged", "status", "finished_at"])
