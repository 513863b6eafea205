"""Billing reads: wallets, tariffs in force, and the hourly usage that prices are applied to."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import IO, Any

from django.db import connection
from django.db.models import F, Q, QuerySet, Sum

from billing.credit import low_credit_sql
from billing.models import (
    Bill,
    BillRun,
    DailyCharge,
    DataExport,
    PrepaidChargeRun,
    ShortageWarning,
    TariffVersion,
    Wallet,
)
from billing.pricing import HourUsage
from meters.models import Direction
from meters.units import kind_base_unit_sql
from portal.lib.csvsafe import FORMULA_PREFIXES
from portal.lib.money import from_minor
from portal.tenancy.models import Account

# The session advisory lock a worker holds while it runs a PrepaidChargeRun (+ the run's id).
CHARGE_RUN_LOCK = 0x6263_0000_0000_0000  # "bc"


def charge_runs_running() -> list[int]:
    """Return the prepaid charge runs not finished, the oldest first: each either has its
    worker (which holds its lock) or lost it."""
    return list(
        PrepaidChargeRun.objects.filter(status=PrepaidChargeRun.Status.RUNNING)
        .order_by("started_at")
        .values_list("id", flat=True)[:100]
    )


def charge_run_is_locked(*, run_id: int) -> bool:
    """True while some worker's session runs the charge run (holds its advisory lock)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [CHARGE_RUN_LOCK + run_id])
        (got,) = cursor.fetchone()
        if got:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [CHARGE_RUN_LOCK + run_id])
    return not got


def wallet_for_account(*, account_id: int) -> Wallet | None:
    return Wallet.objects.for_account(account_id).select_related("account").first()


def tariff_version_on(*, tariff_id: int, day: dt.date) -> TariffVersion | None:
    """The version of a tariff in force on a local day, if any."""
    return (
        TariffVersion.objects.filter(tariff_id=tariff_id, valid_from__lte=day)
        .exclude(valid_to__lte=day)
        .first()
    )


def hourly_usage(
    *,
    account_ids: Sequence[int],
    start: dt.datetime,
    end: dt.datetime,
    time_zone: str,
    service_point_ids: Sequence[int] | None = None,
) -> dict[tuple[int, int], list[HourUsage]]:
    """Validated hourly consumption and export per (account, service point) over [start, end).

    From the hourly rollups, which carry the account of the supply period, so an account is
    never priced for a previous occupant's hours. Suspect readings are already left out of the
    rollups. Hours come back in time order, their start in `time_zone`; one query for all.
    """
    zone = zoneinfo.ZoneInfo(time_zone)
    found: dict[tuple[int, int], dict[int, list[int]]] = defaultdict(dict)
    with connection.cursor() as cursor:
        # Hours as epoch seconds: every account of a time zone shares the same hours, so each
        # is turned into a local datetime once, not once per row (measured: parsing 240k
        # timestamps took longer than pricing them).
        cursor.execute(
            """
            SELECT account_id, service_point_id, extract(epoch FROM hour)::bigint, direction,
                   consumption, estimated
            FROM meters_hourly(%s, %s)
            WHERE account_id = ANY(%s)
              AND (%s::bigint[] IS NULL OR service_point_id = ANY(%s::bigint[]))
            ORDER BY account_id, service_point_id, hour
            """,
            [start, end, list(account_ids), *[_ids_or_none(service_point_ids)] * 2],
        )
        for account_id, sp_id, epoch, direction, consumption, estimated in cursor.fetchall():
            slot = found[(account_id, sp_id)].setdefault(epoch, [0, 0, 0])
            if direction == Direction.EXPORT:
                slot[2] += consumption
            else:
                slot[0] += consumption
                slot[1] += estimated
    local: dict[int, dt.datetime] = {}
    result: dict[tuple[int, int], list[HourUsage]] = {}
    for key, hours in found.items():
        usage = []
        for epoch, (quantity, estimated, export) in hours.items():
            start_local = local.get(epoch)
            if start_local is None:
                start_local = local[epoch] = dt.datetime.fromtimestamp(epoch, zone)
            usage.append(HourUsage(start_local, quantity, estimated, export))
        result[key] = usage
    return result


def imported_between(
    *, account_ids: Sequence[int], start: dt.datetime, end: dt.datetime
) -> dict[tuple[int, int], int]:
    """Imported consumption per (account, service point) over [start, end) from the hourly
    rollups: the month so far that a day's tiers start from (billing.costs)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT account_id, service_point_id, sum(consumption)
            FROM meters_hourly(%s, %s)
            WHERE account_id = ANY(%s) AND direction <> %s
            GROUP BY 1, 2
            """,
            [start, end, list(account_ids), Direction.EXPORT],
        )
        return {(a, sp): int(total) for a, sp, total in cursor.fetchall()}


def _ids_or_none(ids: Sequence[int] | None) -> list[int] | None:
    return None if ids is None else list(ids)


@dataclass(frozen=True)
class CreditState:
    """A prepaid wallet's balance and how many days it lasts at the recent daily cost."""

    balance: int
    currency: str
    emergency_credit: int
    disconnected: bool
    average_daily_cost: int | None  # minor units; None without charges in the window
    days_left: Decimal | None
    # Days of the window with charges: with an unknown average, whether there were none or
    # the export credit covered them (the balance is not running down).
    charged_days: int = 0


def credit_state(*, account_id: int, as_of_day: dt.date, days: int = 14) -> CreditState | None:
    """Days of credit left = balance ÷ average daily charge of the last `days` local days
    (days with charges: a new account is not diluted by days before it), as the shortage
    warnings count it."""
    wallet = Wallet.objects.for_account(account_id).first()
    if wallet is None:
        return None
    totals = list(
        DailyCharge.objects.for_account(account_id)
        .filter(day__gte=as_of_day - dt.timedelta(days=days), day__lt=as_of_day)
        .values("day")
        # What the wallet loses in a day: the charge less the export credit.
        .annotate(total=Sum(F("total") - F("credit")))
        .values_list("total", flat=True)
    )
    average = sum(totals) // len(totals) if totals and sum(totals) > 0 else None
    days_left = None
    if average:
        days_left = max(Decimal(0), Decimal(wallet.balance) / Decimal(average)).quantize(
            Decimal("0.1"), rounding=ROUND_DOWN
        )
    return CreditState(
        balance=wallet.balance,
        currency=wallet.currency,
        emergency_credit=wallet.emergency_credit,
        disconnected=wallet.disconnected_at is not None,
        average_daily_cost=average,
        days_left=days_left,
        charged_days=len(totals),
    )


@dataclass(frozen=True)
class UsedUpCredit:
    """A prepaid balance at or below zero, as its members are told: the emergency credit the
    supply runs on now, and what happens next (billing.services.supply's rule)."""

    balance: int
    currency: str
    emergency_credit: int  # how far below zero the balance may fall before a disconnection
    emergency_left: int  # what remains of it (0 when it is used up too)
    emergency_days: Decimal | None  # how long that lasts at the recent average, down to 0.1
    to_zero: int  # the top-up that brings the balance back to zero
    to_reconnect: int  # the top-up that lifts it back to the limit (0: it is not below)
    disconnected: bool
    # The local hours of a weekday (never a public holiday) in which a supply may be cut.
    cut_from: dt.time
    cut_until: dt.time

    @property
    def emergency_used_up(self) -> bool:
        return self.emergency_left == 0

    @property
    def emergency_credit_amount(self) -> Decimal:
        return from_minor(self.emergency_credit, self.currency)

    @property
    def emergency_left_amount(self) -> Decimal:
        return from_minor(self.emergency_left, self.currency)

    @property
    def to_zero_amount(self) -> Decimal:
        return from_minor(self.to_zero, self.currency)

    @property
    def to_reconnect_amount(self) -> Decimal:
        return from_minor(self.to_reconnect, self.currency)


def credit_used_up(*, state: CreditState) -> UsedUpCredit | None:
    """What a used-up balance (at or below zero) leaves, or None while there is credit.

    A wallet's supply is cut when its balance falls below minus its emergency credit, and
    restored by a top-up that brings it back to that limit or above (see
    billing.services.supply), so the emergency credit left is the limit plus the balance.
    """
    if state.balance > 0:
        return None
    left = max(0, state.emergency_credit + state.balance)
    days = None
    if state.average_daily_cost and state.average_daily_cost > 0:
        days = (Decimal(left) / Decimal(state.average_daily_cost)).quantize(
            Decimal("0.1"), rounding=ROUND_DOWN
        )
    from django.conf import settings

    start, end = settings.PREPAID_DISCONNECT_HOURS
    return UsedUpCredit(
        balance=state.balance,
        currency=state.currency,
        emergency_credit=state.emergency_credit,
        emergency_left=left,
        emergency_days=days,
        to_zero=-state.balance,
        to_reconnect=max(0, -state.emergency_credit - state.balance),
        disconnected=state.disconnected,
        cut_from=dt.time(start % 24),
        cut_until=dt.time(end % 24),
    )


def latest_bill(*, account_id: int) -> Bill | None:
    return (
        Bill.objects.for_account(account_id)
        .filter(credit_note_for__isnull=True)
        .exclude(status=Bill.Status.DRAFT)
        .order_by("-period_start")
        .first()
    )


def bills_for_account(*, account_id: int) -> list[Bill]:
    """Issued, paid and voided bills and credit notes, newest first (drafts are staff's)."""
    return list(
        Bill.objects.for_account(account_id)
        .exclude(status=Bill.Status.DRAFT)
        .order_by("-period_start", "-issued_at")
    )


def bill_for_account(*, account_id: int, public_id: uuid.UUID) -> Bill | None:
    return (
        Bill.objects.for_account(account_id)
        .exclude(status=Bill.Status.DRAFT)
        .filter(public_id=public_id)
        .first()
    )


@dataclass(frozen=True)
class LedgerLine:
    entry_id: int
    created_at: dt.datetime
    kind: str
    memo: str
    amount: int  # minor units, positive when money came in
    balance: int  # after this line


def wallet_ledger(*, account_id: int, limit: int = 200) -> list[LedgerLine]:
    """The wallet's movements, newest first, each with the balance right after it (a window
    over every posting of the wallet, so the running balance is exact)."""
    wallet = Wallet.objects.for_account(account_id).first()
    if wallet is None:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT id, created_at, kind, memo, amount, balance FROM (
                SELECT e.id, e.created_at, e.kind, e.memo, -sum(p.amount) AS amount,
                       -sum(sum(p.amount)) OVER (ORDER BY e.id) AS balance
                FROM billing_posting p JOIN billing_journalentry e ON e.id = p.entry_id
                WHERE p.ledger_account_id = %s
                GROUP BY e.id, e.created_at, e.kind, e.memo
            ) t ORDER BY id DESC LIMIT %s
            """,
            [wallet.ledger_account_id, limit],
        )
        return [LedgerLine(*row) for row in cursor.fetchall()]


# --- Alerts (the resident's alerts page) ----------------------------------------------------


@dataclass(frozen=True)
class ShortageAlert:
    """A low-credit warning as the account's members see it: open while the fall it warned
    of goes on (the account's latest crossing, still under the threshold), else resolved."""

    warning: ShortageWarning
    open: bool


def shortage_alerts_for_account(
    *, account_id: int, as_of_day: dt.date, open_only: bool
) -> list[ShortageAlert]:
    """Return the account's low-credit warnings, newest first (open ones only if asked).

    Only the first warning of each threshold and crossing (level 0): escalations to the
    managers above repeat the same shortage. Which are open is open_shortage_warnings_cte's
    rule, the one the organisation accounts table counts with.
    """
    warnings = list(
        ShortageWarning.objects.filter(account_id=account_id, level=0).order_by(
            "-created_at", "-id"
        )
    )
    if not warnings:
        return []
    open_sql, params = open_shortage_warnings_cte()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH scope AS (SELECT %(sw_account)s::bigint AS account_id, %(sw_today)s::date AS today)
            SELECT warning_id FROM ({open_sql}) open_warnings
            """,  # noqa: S608 - a fixed fragment, no input
            {**params, "sw_account": account_id, "sw_today": as_of_day},
        )
        open_ids = {warning_id for (warning_id,) in cursor.fetchall()}
    alerts = [ShortageAlert(w, w.pk in open_ids) for w in warnings]
    return [a for a in alerts if a.open] if open_only else alerts


# --- Many accounts at once (organisation pages) -------------------------------------------


def credit_cte(*, days: int = 14) -> tuple[str, dict[str, object]]:
    """Return (sql, params) of credit_state for many accounts in one statement.

    Reads a relation `scope(account_id, today)` the caller defines in a WITH clause (the
    accounts and each one's local date) and yields rows (account_id, balance, currency,
    average_daily_cost, days_left, threshold, low) for those with a wallet. The arithmetic is
    credit_state's, written in SQL so that a table can sort and filter by it: the average is
    the whole-unit floor of the charges of the last `days` local days over the number of days
    that have charges (unknown when that sum is not positive); days left is balance ÷ average,
    at least 0, rounded down to 0.1. `threshold` is the highest warning threshold in force
    (the account's policy, else the nearest organisation's up the tree, else the site's
    default, as the shortage warnings resolve it); `low` is billing.credit's rule.
    """
    from django.conf import settings

    low = low_credit_sql(balance="x.balance", days_left="x.days_left", threshold="x.threshold")
    sql = f"""
        SELECT x.account_id, x.balance, x.currency, x.average_daily_cost, x.days_left,
               x.threshold,
               {low} AS low
        FROM (
            SELECT w.account_id, w.balance, w.currency, cost.average AS average_daily_cost,
                   -- An average that floors to 0 (charges smaller than the days) has no
                   -- days left, as in credit_state, rather than a division by zero.
                   CASE WHEN cost.average > 0
                        THEN trunc(greatest(0, w.balance::numeric / cost.average), 1)
                   END AS days_left,
                   greatest(0, (SELECT max(t) FROM unnest(
                       COALESCE(ap.thresholds::int[], op.thresholds, %(cr_default)s::int[])) AS t))
                       AS threshold
            FROM scope s
            JOIN billing_wallet w ON w.account_id = s.account_id
            JOIN tenancy_account a ON a.id = s.account_id
            LEFT JOIN tenancy_organisation o ON o.id = a.organisation_id
            LEFT JOIN (
                SELECT c.account_id,
                       CASE WHEN sum(c.total - c.credit) > 0
                            THEN floor(sum(c.total - c.credit) / count(DISTINCT c.day))::bigint
                       END AS average
                FROM scope cs
                JOIN billing_dailycharge c ON c.account_id = cs.account_id
                     AND c.day >= cs.today - %(cr_days)s AND c.day < cs.today
                GROUP BY c.account_id
            ) cost ON cost.account_id = s.account_id
            LEFT JOIN billing_warningpolicy ap ON ap.account_id = s.account_id
            LEFT JOIN LATERAL (
                -- The nearest organisation up the tree that has a policy (a short table).
                SELECT p.thresholds::int[] AS thresholds
                FROM billing_warningpolicy p
                WHERE p.organisation_id = ANY(string_to_array(trim(both '/' from o.path), '/')
                                              ::bigint[])
                ORDER BY array_position(
                    string_to_array(trim(both '/' from o.path), '/')::bigint[],
                    p.organisation_id::bigint) DESC
                LIMIT 1
            ) op ON o.path IS NOT NULL
        ) x
    """  # noqa: S608 - a fixed fragment, no input
    return sql, {
        "cr_days": days,
        "cr_default": [int(t) for t in settings.SHORTAGE_WARNING_THRESHOLDS],
    }


def warning_threshold(*, account_id: int, as_of_day: dt.date) -> int:
    """The highest low-credit warning threshold (days) in force for an account: credit_cte's,
    so that the account home and the organisation tables judge low credit alike."""
    credit_sql, credit_params = credit_cte()
    params: dict[str, Any] = {**credit_params, "cr_account": account_id, "cr_today": as_of_day}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH scope AS (SELECT %(cr_account)s::bigint AS account_id, %(cr_today)s::date AS today)
            SELECT threshold FROM ({credit_sql}) c
            """,  # noqa: S608 - a fixed fragment, no input
            params,
        )
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def open_shortage_warnings_cte() -> tuple[str, dict[str, Any]]:
    """Return (sql, params) yielding rows (account_id, warning_id, threshold): the open
    low-credit warnings of the accounts of a relation `scope(account_id, today)` that the
    caller defines in a WITH clause. The one statement of what "open" means, for the
    account's alerts (shortage_alerts_for_account) and the organisation table alike.

    A warning is open while the fall it warned of goes on: it is a level-0 warning (the
    escalations above repeat the same shortage) of the account's latest crossing (a credit
    that lifted the balance above every threshold started a new one and resolved the older
    ones), and the balance is at most zero, or the days left (credit_cte's, which are
    credit_state's) are at most its threshold.
    """
    credit_sql, credit_params = credit_cte()
    params: dict[str, Any] = dict(credit_params)
    sql = f"""
        SELECT sw.account_id, sw.id AS warning_id, sw.threshold
        FROM (
            -- Credit only of the accounts that were ever warned: few of a large subtree.
            WITH scope AS (
                SELECT s.account_id, s.today FROM scope s
                WHERE EXISTS (SELECT 1 FROM billing_shortagewarning w
                              WHERE w.account_id = s.account_id AND w.level = 0)
            )
            {credit_sql}
        ) c
        JOIN billing_shortagewarning sw ON sw.account_id = c.account_id AND sw.level = 0
        WHERE sw.crossing = (SELECT max(latest.crossing) FROM billing_shortagewarning latest
                             WHERE latest.account_id = c.account_id AND latest.level = 0)
          AND (c.balance <= 0 OR (sw.threshold > 0 AND c.days_left <= sw.threshold))
    """  # noqa: S608 - fixed fragments only
    return sql, params


# --- Data exports ---------------------------------------------------------------------------
# What a resident's export holds is read here; billing.services.exports writes it into a ZIP.
# Readings are clipped to the account's supply periods: a reading belongs to the account when
# its interval (or, for a register reading without one, its time) starts at or after the
# move-in and ends by the move-out, and its meter was installed at the service point then.
# Rollups, bills and the ledger carry the account already.


def _sql_text_safe(column: str) -> str:
    """portal.lib.csvsafe's neutralisation as an SQL expression over a text column, for the
    parts streamed by COPY."""
    prefixes = ", ".join(
        f"'{p}'" if p.isprintable() and p != "'" else f"chr({ord(p)})" for p in FORMULA_PREFIXES
    )
    return f"CASE WHEN left({column}, 1) IN ({prefixes}) THEN '''' || {column} ELSE {column} END"


def exports_for_account(*, account_id: int, limit: int = 10) -> list[DataExport]:
    """The account's latest exports, newest first."""
    return list(DataExport.objects.for_account(account_id).order_by("-created_at", "-id")[:limit])


def export_for_account(*, account_id: int, public_id: uuid.UUID) -> DataExport | None:
    return DataExport.objects.for_account(account_id).filter(public_id=public_id).first()


def export_get_by_id(*, export_id: int) -> DataExport | None:
    return DataExport.objects.select_related("account").filter(pk=export_id).first()


def exports_open_for_account(*, account_id: int) -> DataExport | None:
    """The account's queued or running export, if any (there is at most one)."""
    return (
        DataExport.objects.for_account(account_id)
        .filter(status__in=[DataExport.Status.QUEUED, DataExport.Status.RUNNING])
        .first()
    )


def export_recent_for_account(*, account_id: int, since: dt.datetime) -> DataExport | None:
    """The account's newest finished export requested since `since` and not yet expired."""
    return (
        DataExport.objects.for_account(account_id)
        .filter(status=DataExport.Status.DONE, created_at__gte=since, expires_at__gt=since)
        .order_by("-created_at")
        .first()
    )


def exports_expired_ids(*, as_of: dt.datetime, account_id: int | None = None) -> list[int]:
    """Finished exports whose time is up (their files are to be deleted)."""
    qs = DataExport.objects.filter(
        status__in=[DataExport.Status.DONE, DataExport.Status.FAILED], expires_at__lte=as_of
    )
    if account_id is not None:
        qs = qs.for_account(account_id)
    return list(qs.values_list("pk", flat=True))


def exports_stalled_ids(*, before: dt.datetime) -> list[int]:
    """Exports queued or started before `before` and still not finished."""
    return list(
        DataExport.objects.filter(
            status__in=[DataExport.Status.QUEUED, DataExport.Status.RUNNING],
            created_at__lt=before,
        ).values_list("pk", flat=True)
    )


# The unit of each service point's rollups: that of its registers in the direction (Wh or L);
# without registers, the kind's default (meters.units, the one rule).
_UNITS_CTE = """
units AS (
    SELECT mi.service_point_id, r.direction, min(r.unit) AS unit
    FROM meters_meterinstallation mi JOIN meters_register r ON r.meter_id = mi.meter_id
    WHERE mi.service_point_id IN (
        SELECT service_point_id FROM meters_supply WHERE account_id = %(account)s)
    GROUP BY 1, 2
)
"""
_UNIT = f"coalesce(u.unit, {kind_base_unit_sql('sp.kind')})"
DAILY_COLUMNS = (
    "service_point",
    "kind",
    "direction",
    "day",
    "unit",
    "consumption",
    "estimated",
    "hours",
)


def export_daily_count(*, account_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM meters_rollupdaily WHERE account_id = %s", [account_id]
        )
        return int(cursor.fetchone()[0])


def export_daily_copy(*, account_id: int, out: IO[bytes]) -> int:
    """Write the account's daily consumption (local days of each service point) as CSV rows."""
    query = f"""
        COPY (
            WITH {_UNITS_CTE}
            SELECT {_sql_text_safe("sp.code")}, sp.kind, d.direction, d.day, {_UNIT},
                   d.consumption, d.estimated, d.hours
            FROM meters_rollupdaily d
            JOIN meters_servicepoint sp ON sp.id = d.service_point_id
            LEFT JOIN units u ON u.service_point_id = d.service_point_id
                             AND u.direction = d.direction
            WHERE d.account_id = %(account)s
            ORDER BY sp.code, d.direction, d.day
        ) TO STDOUT (FORMAT csv)
        """.replace("%(account)s", str(int(account_id)))  # noqa: S608 - constants and an int
    with connection.cursor() as cursor:
        with cursor.copy(query) as copy:
            for data in copy:
                out.write(data)
        return int(cursor.rowcount)


@dataclass(frozen=True)
class HourlySeries:
    """The account's hourly rollups at one service point in one direction."""

    service_point_id: int
    service_point_public_id: uuid.UUID
    service_point: str
    kind: str
    direction: str
    unit: str
    rows: int
    first: dt.datetime
    last: dt.datetime


def export_hourly_series(*, account_id: int) -> list[HourlySeries]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH {_UNITS_CTE}
            SELECT sp.id, sp.public_id, sp.code, sp.kind, h.direction, {_UNIT},
                   count(*), min(h.hour), max(h.hour)
            FROM meters_hourly('-infinity', 'infinity') h
            JOIN meters_servicepoint sp ON sp.id = h.service_point_id
            LEFT JOIN units u ON u.service_point_id = h.service_point_id
                             AND u.direction = h.direction
            WHERE h.account_id = %(account)s
            GROUP BY sp.id, sp.public_id, sp.code, sp.kind, h.direction, u.unit
            ORDER BY sp.code, h.direction
            """,  # noqa: S608 - constants only
            {"account": account_id},
        )
        return [HourlySeries(*row) for row in cursor.fetchall()]


def export_hourly_values(
    *, account_id: int, series: HourlySeries, start: dt.datetime, end: dt.datetime
) -> list[tuple[int, int, int]]:
    """(hour start as Unix seconds, consumption, estimated) of a series over [start, end)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT extract(epoch FROM hour)::bigint, consumption, estimated
            FROM meters_hourly(%s, %s)
            WHERE account_id = %s AND direction = %s AND service_point_id = %s
            ORDER BY hour
            """,
            [start, end, account_id, series.direction, series.service_point_id],
        )
        return [(int(e), int(c), int(s)) for e, c, s in cursor.fetchall()]


def export_bills(*, account_id: int) -> list[Bill]:
    """The account's bills and credit notes (drafts are staff's), oldest first, with lines."""
    return list(
        Bill.objects.for_account(account_id)
        .exclude(status=Bill.Status.DRAFT)
        .select_related("credit_note_for")
        .prefetch_related("lines__service_point")
        .order_by("period_start", "id")
    )


def export_ledger(*, account_id: int) -> tuple[str, list[LedgerLine]]:
    """Every movement of the account's wallet, oldest first, with the balance after each;
    the wallet's currency ("" and no lines for an account without a wallet)."""
    wallet = Wallet.objects.for_account(account_id).first()
    if wallet is None:
        return "", []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.id, e.created_at, e.kind, e.memo, -sum(p.amount),
                   -sum(sum(p.amount)) OVER (ORDER BY e.id)
            FROM billing_posting p JOIN billing_journalentry e ON e.id = p.entry_id
            WHERE p.ledger_account_id = %s
            GROUP BY e.id, e.created_at, e.kind, e.memo
            ORDER BY e.id
            """,
            [wallet.ledger_account_id],
        )
        return wallet.currency, [LedgerLine(*row) for row in cursor.fetchall()]


def postpaid_accounts_for_month(*, period_start: dt.date) -> QuerySet[Account]:
    """The accounts a month's bill run bills: postpaid, open or closed during the month."""
    return Account.objects.filter(payment_mode=Account.PaymentMode.POSTPAID).filter(
        Q(closed_at__isnull=True) | Q(closed_at__date__gte=period_start)
    )


@dataclass(frozen=True)
class BillRunProgress:
    billed: int
    total: int  # billed so far plus the accounts still to bill

    @property
    def percent(self) -> int:
        return 100 if not self.total else 100 * self.billed // self.total


def bill_run_progress(*, run: BillRun) -> BillRunProgress:
    """How far a month's run is: its bills against every account it has to bill. A finished
    run answers from its own count (accounts opened since would skew a recount; those it
    skipped are listed with the run)."""
    if run.status == BillRun.Status.DONE:
        return BillRunProgress(run.bills, run.bills)
    billed = Bill.objects.filter(run=run).count()
    done = Bill.objects.filter(period_start=run.period_start, credit_note_for__isnull=True)
    todo = (
        postpaid_accounts_for_month(period_start=run.period_start)
        .exclude(pk__in=done.values("account_id"))
        .count()
    )
    return BillRunProgress(billed, billed + todo)
