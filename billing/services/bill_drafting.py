"""Drafting postpaid bills: a month of an account priced from the rollups into lines, and the
draft bills and their lines written set-wise.

- **Period**: a calendar month in the account's local time, [first day, first day of next month).
- **Determinants**: the rollups, which carry the account of the supply period (a new occupant
  is never billed for the previous one's hours). Flat and tiered prices need only daily totals
  (tiers count in time order and a tariff version is in force for whole days), so they read the
  daily rollups (or, for a service point in another time zone than the account, the hours
  summed per the account's local day in SQL); time-of-use prices read the hourly rollups.
  Hours at a service point on days the account has no tariff assignment there are not billed.
- **Lines**: every local day priced and rounded on its own by billing.costs (the computation
  the usage page, its CSVs and the prepaid charges share), then summed per service point and
  tariff version (consumption per tier or band, standing charge, export credit), then
  adjustments, then one tax line per tax rate: the sum of the days' tax at that rate. So a
  line's amount is the sum of its days, which may differ from quantity x unit price by a few
  minor units (the PDF says so). Adjustments are stated as final amounts and are not taxed
  again; the export credit is untaxed. `total = subtotal + tax`, the sum of the lines.
- **Estimated consumption**: a line with estimated hours in it is `estimated`; the bill's
  `has_estimates` is set when any line is.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection
from django.utils.translation import gettext_lazy as _

from billing.costs import Window, days_priced, holds_at_midnight
from billing.exceptions import BillError
from billing.models import BillLine, TariffVersion
from billing.pricing import HourUsage, TariffError, structure_of
from billing.selectors import hourly_usage
from billing.windows import tariff_windows
from meters.models import Direction
from meters.selectors.fleet import supply_periods
from portal.lib.money import from_minor
from portal.lib.periods import local_midnight, next_month
from portal.tenancy.models import Account

# --- Periods ----------------------------------------------------------------------------------


def _check_month(period_start: dt.date) -> dt.date:
    if period_start.day != 1:
        raise BillError(_("A bill period starts on the first day of a month."))
    return next_month(period_start)


# --- Pricing one chunk of accounts --------------------------------------------------------------


@dataclass(frozen=True)
class _AccountRow:
    pk: int
    number: str
    currency: str
    time_zone: str
    organisation_id: int | None


@dataclass
class _LineDraft:
    kind: str
    service_point_id: int | None
    label: str
    band: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: int
    estimated: bool
    ledger_key: str  # revenue key (utility kind), "adjustments" or "tax"


@dataclass
class _BillDraft:
    account: _AccountRow
    lines: list[_LineDraft] = field(default_factory=list)

    @property
    def subtotal(self) -> int:
        return sum(line.amount for line in self.lines if line.kind != BillLine.Kind.TAX)

    @property
    def tax(self) -> int:
        return sum(line.amount for line in self.lines if line.kind == BillLine.Kind.TAX)

    @property
    def has_estimates(self) -> bool:
        return any(line.estimated for line in self.lines)


@dataclass(frozen=True)
class _Window:
    """Days [start, end) of one service point priced by one tariff version."""

    service_point_id: int
    kind: str
    unit: str
    version: TariffVersion
    start: dt.date
    end: dt.date
    time_zone: str = ""  # the service point's (its daily rollups are its local days)


def _needs_hours(version: TariffVersion) -> bool:
    structure = structure_of(version)
    return any(plan.bands for plan in structure.plans_by_month.values())


def _windows(
    accounts: Sequence[_AccountRow], start: dt.date, end: dt.date
) -> tuple[dict[int, list[_Window]], dict[int, str]]:
    """Tariff windows per account over [start, end) (billing.windows), and the accounts that
    cannot be priced: a bill is refused rather than issued with days left out."""
    found = tariff_windows(account_ids=[a.pk for a in accounts], first=start, stop=end)
    windows: dict[int, list[_Window]] = defaultdict(list)
    for (account_id, sp_id), supply_windows in found.by_supply.items():
        if account_id in found.problems:
            continue
        windows[account_id].extend(
            _Window(sp_id, w.kind, w.unit, w.version, w.start, w.end, w.time_zone)
            for w in supply_windows
        )
    return windows, found.problems


_SUMS = """
    coalesce(sum(consumption) FILTER (WHERE direction <> %(export)s), 0),
    coalesce(sum(estimated) FILTER (WHERE direction <> %(export)s), 0),
    coalesce(sum(consumption) FILTER (WHERE direction = %(export)s), 0)
"""


def _daily_usage(
    *,
    account_ids: Sequence[int],
    other_zone_sps: Sequence[int],
    start: dt.datetime,
    end: dt.datetime,
    time_zone: str,
) -> dict[tuple[int, int], list[HourUsage]]:
    """Usage per local day (one HourUsage at local midnight each), in one query.

    Where the service point keeps the account's time zone (the usual case) its daily rollups
    are those days already; the service points in `other_zone_sps` have their hours summed by
    the account's local day instead.
    """
    zone = zoneinfo.ZoneInfo(time_zone)
    midnights: dict[dt.date, dt.datetime] = {}
    found: dict[tuple[int, int], list[HourUsage]] = defaultdict(list)
    hourly_part = f"""
        UNION ALL
        SELECT h.account_id, h.service_point_id, (h.hour AT TIME ZONE %(tz)s)::date, {_SUMS}
        FROM meters_hourly(%(start)s, %(end)s) h
        WHERE h.service_point_id = ANY(%(others)s) AND h.account_id = ANY(%(accounts)s)
        GROUP BY 1, 2, 3
    """  # noqa: S608 - only module constants are formatted in; values are bound
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT d.account_id, d.service_point_id, d.day, {_SUMS}
            FROM meters_rollupdaily d
            WHERE d.account_id = ANY(%(accounts)s) AND d.day >= %(first)s AND d.day < %(last)s
              AND NOT d.service_point_id = ANY(%(others)s)
            GROUP BY 1, 2, 3
            {hourly_part if other_zone_sps else ""}
            ORDER BY 1, 2, 3
            """,  # noqa: S608 - only module constants are formatted in; values are bound
            {
                "export": Direction.EXPORT,
                "accounts": list(account_ids),
                "others": list(other_zone_sps),
                "first": start.astimezone(zone).date(),
                "last": end.astimezone(zone).date(),
                "tz": time_zone,
                "start": start,
                "end": end,
            },
        )
        for account_id, sp_id, day, quantity, estimated, export in cursor.fetchall():
            midnight = midnights.get(day)
            if midnight is None:
                midnight = midnights[day] = local_midnight(day, zone).astimezone(zone)
            found[(account_id, sp_id)].append(
                HourUsage(midnight, int(quantity), int(estimated), int(export))
            )
    return found


def _price_chunk(
    accounts: Sequence[_AccountRow], start: dt.date, end: dt.date, time_zone: str
) -> tuple[list[_BillDraft], dict[int, str]]:
    """Price the month of accounts sharing one time zone; return drafts and refusals."""
    windows, problems = _windows(accounts, start, end)
    zone = zoneinfo.ZoneInfo(time_zone)
    utc_start = local_midnight(start, zone)
    utc_end = local_midnight(end, zone)
    try:
        hourly_ids = sorted(
            {acc for acc, ws in windows.items() for w in ws if _needs_hours(w.version)}
        )
    except TariffError as exc:  # a stored structure that no longer parses
        raise BillError(str(exc)) from exc
    daily_ids = sorted(set(windows) - set(hourly_ids))
    usage: dict[tuple[int, int], list[HourUsage]] = {}
    if daily_ids:
        # Flat and tiered prices of a day need only its total: one row per day, not 24.
        usage.update(
            _daily_usage(
                account_ids=daily_ids,
                other_zone_sps=sorted(
                    {
                        w.service_point_id
                        for acc in daily_ids
                        for w in windows[acc]
                        if w.time_zone != time_zone
                    }
                ),
                start=utc_start,
                end=utc_end,
                time_zone=time_zone,
            )
        )
    if hourly_ids:
        usage.update(
            hourly_usage(account_ids=hourly_ids, start=utc_start, end=utc_end, time_zone=time_zone)
        )
    periods = supply_periods(account_ids=list(windows))
    drafts: list[_BillDraft] = []
    for account in accounts:
        if account.pk not in windows:
            continue
        try:
            drafts.append(_price_account(account, windows[account.pk], usage, periods=periods))
        except TariffError as exc:
            problems[account.pk] = str(exc)
    return drafts, problems


def _price_account(
    account: _AccountRow,
    windows: Sequence[_Window],
    usage: dict[tuple[int, int], list[HourUsage]],
    *,
    periods: dict[tuple[int, int], list[tuple[dt.datetime, dt.datetime | None]]] | None = None,
) -> _BillDraft:
    """Every local day of every service point priced by billing.costs, then summed: lines per
    service point and tariff version (consumption per tier or band, standing charge, export
    credit), then one tax line per tax rate. A line's amount is the sum of its days' rounded
    amounts, so the bill is exactly the days the usage page and the CSVs show.

    `periods` are the supply periods per (account, service point), whose holder at a day's
    midnight pays its standing charge; without them every day of a window does.
    """
    zone = zoneinfo.ZoneInfo(account.time_zone)
    draft = _BillDraft(account)
    taxes: dict[Decimal, list[int]] = {}  # rate: [base, amount]
    by_sp: dict[int, list[_Window]] = defaultdict(list)
    for window in windows:
        by_sp[window.service_point_id].append(window)
    for sp_id, sp_windows in by_sp.items():
        sp_windows.sort(key=lambda w: w.start)
        held = periods.get((account.pk, sp_id), []) if periods is not None else None
        days = days_priced(
            usage.get((account.pk, sp_id), []),
            [Window(w.version, w.start, w.end) for w in sp_windows],
            first=sp_windows[0].start,
            stop=sp_windows[-1].end,
            standing=_standing_rule(held, zone),
            currency=account.currency,
            unit=sp_windows[0].unit,
            zone=zone,
        )
        lines: dict[tuple[Any, ...], _LineDraft] = {}
        for day in days:
            for line in day.lines:
                if line.kind == BillLine.Kind.TAX:
                    total = taxes.setdefault(line.unit_price, [0, 0])
                    total[0] += int(line.quantity)
                    total[1] += line.amount
                    continue
                key = (line.kind, day.version.pk, line.label, line.band, line.unit_price)
                found = lines.get(key)
                if found is None:
                    lines[key] = _LineDraft(
                        line.kind,
                        sp_id,
                        line.label,
                        line.band,
                        line.quantity,
                        line.unit,
                        line.unit_price,
                        line.amount,
                        line.estimated,
                        sp_windows[0].kind,
                    )
                else:
                    found.quantity += line.quantity
                    found.amount += line.amount
                    found.estimated = found.estimated or line.estimated
        kinds = (BillLine.Kind.CONSUMPTION, BillLine.Kind.STANDING, BillLine.Kind.EXPORT)
        for kind in kinds:
            draft.lines.extend(line for line in lines.values() if line.kind == kind)
    for rate, (base, amount) in taxes.items():
        draft.lines.append(_tax_line(rate, base, amount, account.currency))
    return draft


def _standing_rule(
    held: list[tuple[dt.datetime, dt.datetime | None]] | None, zone: zoneinfo.ZoneInfo
) -> Callable[[dt.date], bool]:
    """Which days of a window carry the standing charge: those whose midnight the account's
    supply holds (every day when the periods are not given)."""
    if held is None:
        return lambda day: True
    return lambda day: holds_at_midnight(held, day, zone)


def _tax_line(rate: Decimal, base: int, amount: int, currency: str) -> _LineDraft:
    """The bill's tax at one rate: the sum of its days' tax (each rounded once a day)."""
    return _LineDraft(
        BillLine.Kind.TAX,
        None,
        "tax",
        "",
        from_minor(base, currency),
        currency,
        rate,
        amount,
        False,
        "tax",
    )


# --- Writing bills set-wise ---------------------------------------------------------------------


def _insert_drafts(
    drafts: Sequence[_BillDraft],
    *,
    period_start: dt.date,
    period_end: dt.date,
    run_id: int | None,
    as_of: dt.datetime,
) -> list[tuple[int, _BillDraft]]:
    """Insert draft bills and their lines; accounts already billed for the period are left
    out (ON CONFLICT) and nothing is written for them. Return (bill id, draft) of new ones."""
    if not drafts:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO billing_bill (public_id, account_id, organisation_id, run_id,
                period_start, period_end, currency, status, subtotal, tax, total,
                has_estimates, void_reason, created_at)
            SELECT gen_random_uuid(), a, o, %s, %s, %s, c, 'draft', s, t, s + t, e, '', %s
            FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bigint[], %s::bigint[],
                        %s::bool[]) AS v(a, o, c, s, t, e)
            ON CONFLICT (account_id, period_start) WHERE credit_note_for_id IS NULL
            DO NOTHING
            RETURNING id, account_id
            """,
            [
                run_id,
                period_start,
                period_end,
                as_of,
                [d.account.pk for d in drafts],
                [d.account.organisation_id for d in drafts],
                [d.account.currency for d in drafts],
                [d.subtotal for d in drafts],
                [d.tax for d in drafts],
                [d.has_estimates for d in drafts],
            ],
        )
        by_account = {d.account.pk: d for d in drafts}
        created = sorted((bill_id, by_account[acc]) for bill_id, acc in cursor.fetchall())
        _insert_lines([(bill_id, draft.lines) for bill_id, draft in created])
    return created


def _insert_lines(bills: Sequence[tuple[int, Sequence[_LineDraft]]]) -> None:
    columns: list[list[Any]] = [[] for _ in range(11)]
    for bill_id, lines in bills:
        for position, line in enumerate(lines, start=1):
            values = (
                bill_id,
                position,
                line.kind,
                line.service_point_id,
                line.label[:200],
                line.band[:64],
                line.quantity,
                line.unit[:8],
                line.unit_price,
                line.amount,
                line.estimated,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
    if not columns[0]:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO billing_billline (bill_id, position, kind, service_point_id, label, band,
                quantity, unit, unit_price, amount, estimated)
            SELECT * FROM unnest(%s::bigint[], %s::smallint[], %s::text[], %s::bigint[],
                %s::text[], %s::text[], %s::numeric[], %s::text[], %s::numeric[], %s::bigint[],
                %s::bool[])
            """,
            columns,
        )


def _account_row(account: Account) -> _AccountRow:
    return _AccountRow(
        account.pk, account.number, account.currency, account.time_zone, account.organisation_id
    )
