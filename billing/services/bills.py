"""Postpaid bills: a month priced from the rollups, bill runs, issue, payment and void.

Decisions, each taken once here:

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
- **Numbers**: one `BillSequence` row per issuer (an organisation; households without one
  share the utility's row, organisation empty), locked `FOR UPDATE` inside the issuing
  transaction: a concurrent issue waits, a rolled-back one gives its numbers back, so numbers
  have no gaps. The printed number is `<prefix>-<year of issue>-<sequence>` (`HR-2026-000123`),
  unique across issuers: an organisation's prefix is kept on its row (derived from its name
  when its first bill is numbered), the households' comes from `BILLING_HOUSEHOLD_BILL_PREFIX`.
  A credit note takes the next number of the same series. Each number comes with a payment
  reference (account number, bill number, check character) that a transfer quotes.
- **Ledger**: issuing debits `receivable:<account>` with the total and credits revenue (per
  utility kind, as prepaid charges do), adjustments and tax. A payment debits the clearing
  account `clearing:bill-payments` and credits the receivable. Voiding posts the reversal of the
  issue entry (so a paid bill that is voided leaves the customer in credit on the receivable).
- **Void** never deletes: the bill becomes `void` and a credit note (a bill with the negated
  lines, `credit_note_for` the voided bill) is issued with its own number. A voided period is
  not billed again by a run (one regular bill per account and period); corrections go on the
  next bill as adjustments.
- **Bill runs** are idempotent: one `BillRun` per month; a finished run is returned as it is;
  an interrupted one resumes, skipping the accounts already billed (a unique constraint allows
  one regular bill per account and period; chunks lock the run's row, so two workers never
  price the same chunk). Each chunk of accounts is one transaction: usage read in one query,
  priced in Python, bills, lines, numbers and ledger entries written by a few set-wise
  statements.
- **Audit**: a run records one entry (`bill_run.finish`, with its counts), not one per bill;
  `bill_create`, `bill_issue`, `bill_mark_paid` and `bill_void` record one entry per bill.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import zoneinfo
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils.translation import gettext_lazy as _

from billing.costs import Window, days_priced, holds_at_midnight
from billing.exceptions import BillingError
from billing.models import (
    Bill,
    BillLine,
    BillRun,
    JournalEntry,
    LedgerAccount,
    TariffAssignment,
    TariffVersion,
)
from billing.pricing import HourUsage, TariffError, structure_of
from billing.selectors import hourly_usage, postpaid_accounts_for_month
from billing.services.ledger import journal_post, ledger_account_get
from meters.models import Direction, ServicePoint
from meters.selectors import supply_periods
from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.money import format_minor, from_minor
from portal.tenancy.models import Account

DEFAULT_CHUNK = 1000
PAYMENT_CLEARING_KEY = "bill-payments"


class BillError(BillingError):
    """A bill that cannot be created, issued, paid or voided; the message says why."""


# --- Periods ----------------------------------------------------------------------------------


def month_end(period_start: dt.date) -> dt.date:
    """The first day of the month after `period_start`'s month."""
    if period_start.month == 12:
        return dt.date(period_start.year + 1, 1, 1)
    return dt.date(period_start.year, period_start.month + 1, 1)


def _check_month(period_start: dt.date) -> dt.date:
    if period_start.day != 1:
        raise BillError(_("A bill period starts on the first day of a month."))
    return month_end(period_start)


def _local_midnight(day: dt.date, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=zone)


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
    """Tariff windows per account over [start, end), and the accounts that cannot be priced."""
    rows = list(
        TariffAssignment.objects.filter(account_id__in=[a.pk for a in accounts], valid_from__lt=end)
        .exclude(valid_to__lte=start)
        .values_list(
            "account_id",
            "service_point_id",
            "tariff_id",
            "valid_from",
            "valid_to",
            "tariff__currency",
            "tariff__quantity_unit",
            "tariff__kind",
            "service_point__time_zone",
        )
        .order_by("account_id", "service_point_id", "valid_from")
    )
    versions: dict[int, list[TariffVersion]] = defaultdict(list)
    for version in (
        TariffVersion.objects.filter(tariff_id__in={row[2] for row in rows}, valid_from__lt=end)
        .exclude(valid_to__lte=start)
        .order_by("tariff_id", "valid_from")
    ):
        versions[version.tariff_id].append(version)
    currency_of = {a.pk: a.currency for a in accounts}
    windows: dict[int, list[_Window]] = defaultdict(list)
    problems: dict[int, str] = {}
    for account_id, sp_id, tariff_id, valid_from, valid_to, currency, unit, kind, zone in rows:
        if currency != currency_of[account_id]:
            problems[account_id] = f"tariff {tariff_id} is in {currency}"
            continue
        a = max(valid_from, start)
        b = min(valid_to or end, end)
        covered = 0
        for version in versions[tariff_id]:
            v_start = max(a, version.valid_from)
            v_end = min(b, version.valid_to or b)
            if v_start < v_end:
                windows[account_id].append(
                    _Window(sp_id, kind, unit, version, v_start, v_end, zone)
                )
                covered += (v_end - v_start).days
        if covered != (b - a).days:
            problems[account_id] = f"tariff {tariff_id} has no prices for some days"
    for account_id in problems:
        windows.pop(account_id, None)
    return windows, problems


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
        FROM meters_rolluphourly h
        WHERE h.service_point_id = ANY(%(others)s) AND h.account_id = ANY(%(accounts)s)
          AND h.hour >= %(start)s AND h.hour < %(end)s
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
                midnight = midnights[day] = _local_midnight(day, zone)
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
    utc_start = _local_midnight(start, zone)
    utc_end = _local_midnight(end, zone)
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
    now: dt.datetime,
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
                now,
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


# --- Numbers and payment references ------------------------------------------------------------

# Serialises the creation of issuers' sequence rows, so that two new issuers never derive the
# same prefix (taken only when an issuer's first bill is numbered).
_PREFIX_LOCK = 0x6269_6C6C  # "bill"


@dataclass(frozen=True)
class _ToNumber:
    """A draft bill to number: its issuer, and what its number and reference are made of."""

    bill_id: int
    organisation_id: int | None
    account_number: str
    time_zone: str


def bill_number_format(*, prefix: str, year: int, sequence_number: int) -> str:
    """The printed bill number: `HR-2026-000123` (six digits at least, more when needed)."""
    return f"{prefix}-{year}-{sequence_number:06d}"


_ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _check_character(body: str) -> str:
    """The Luhn mod 36 check character of `body` (digits and capital letters): it catches every
    single mistyped character and nearly every swap of two neighbours. (Luhn's mod 10 over
    letters spelt as two digits, as account numbers' check digit does for digits, missed one
    mistyped letter in thirteen.)"""
    n = len(_ALPHANUMERIC)
    total = 0
    for index, char in enumerate(reversed(body)):
        value = _ALPHANUMERIC.index(char) * (2 if index % 2 == 0 else 1)
        total += value // n + value % n
    return _ALPHANUMERIC[-total % n]


def bill_payment_reference(*, account_number: str, bill_number: str) -> str:
    """The reference a payer quotes with a transfer: the letters and digits of the account
    number, then of the bill number, then a check character. Unique, since the bill number
    is; the account number in it still finds the payer when the rest is mistyped."""
    body = re.sub(r"[^0-9A-Z]", "", f"{account_number}{bill_number}".upper())
    return body + _check_character(body)


def bill_payment_reference_valid(reference: str) -> bool:
    """Whether `reference` (spaces and case aside) ends in its own check character."""
    compact = re.sub(r"\s", "", reference).upper()
    if not re.fullmatch(r"[0-9A-Z]{2,}", compact):
        return False
    return _check_character(compact[:-1]) == compact[-1]


def _derived_prefix(name: str, organisation_id: int, taken: set[str]) -> str:
    """An organisation's prefix from its name: the initials (Harbour Residential: HR), a
    one-word name's first three letters, `ORG<id>` for a name without Latin letters; a
    prefix already taken gets 2, 3, ... after it."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    words = re.findall(r"[A-Za-z0-9]+", ascii_name)
    base = words[0][:3] if len(words) == 1 else "".join(word[0] for word in words)[:4]
    base = base.upper() or f"ORG{organisation_id}"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}{n}", n + 1
    return candidate


def _create_sequences(cursor: Any, organisation_ids: Sequence[int | None]) -> None:
    """Create the missing sequence rows of these issuers, with a prefix each (race-safe)."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PREFIX_LOCK])
    cursor.execute("SELECT prefix FROM billing_billsequence WHERE prefix <> ''")
    taken = {prefix for (prefix,) in cursor.fetchall()} | {settings.BILLING_HOUSEHOLD_BILL_PREFIX}
    cursor.execute(
        "SELECT id, name FROM tenancy_organisation WHERE id = ANY(%s) ORDER BY id",
        [[o for o in organisation_ids if o is not None]],
    )
    rows: list[tuple[int | None, str]] = []
    for organisation_id, name in cursor.fetchall():
        prefix = _derived_prefix(name, organisation_id, taken)
        taken.add(prefix)
        rows.append((organisation_id, prefix))
    if None in organisation_ids:
        rows.append((None, ""))  # households: the prefix is the setting's, read at issue
    cursor.execute(
        "INSERT INTO billing_billsequence (organisation_id, prefix, next_number) "
        "SELECT o, p, 1 FROM unnest(%s::bigint[], %s::text[]) AS t(o, p) "
        "ON CONFLICT DO NOTHING",
        [[o for o, _ in rows], [p for _, p in rows]],
    )


def _take_numbers(organisation_ids: Sequence[int | None]) -> list[tuple[str, int]]:
    """Reserve one (prefix, number) per entry of `organisation_ids` (in that order), gap-free.

    The sequence rows are created race-safely on first use and locked until the caller's
    transaction ends: a concurrent issuer waits, and a rollback gives the numbers back.

    :raises BillError: when an issuer's sequence row cannot be created (its derived prefix
        taken meanwhile by a row made outside this function).
    """
    wanted = sorted(set(organisation_ids), key=lambda o: (o is not None, o or 0))
    select = """
        SELECT id, organisation_id, prefix, next_number FROM billing_billsequence
        WHERE organisation_id = ANY(%s) OR (%s AND organisation_id IS NULL)
        ORDER BY id
    """
    params: list[Any] = [[o for o in wanted if o is not None], None in wanted]
    with connection.cursor() as cursor:
        cursor.execute(select, params)
        found = {org for _id, org, _prefix, _next in cursor.fetchall()}
        if missing := [o for o in wanted if o not in found]:
            _create_sequences(cursor, missing)
        cursor.execute(select + " FOR UPDATE", params)
        sequences = {org: [seq_id, prefix, nxt] for seq_id, org, prefix, nxt in cursor.fetchall()}
        if len(sequences) != len(wanted):
            raise BillError(_("A bill number series could not be created; try again."))
        numbers = []
        for org in organisation_ids:
            prefix = settings.BILLING_HOUSEHOLD_BILL_PREFIX if org is None else sequences[org][1]
            numbers.append((prefix, sequences[org][2]))
            sequences[org][2] += 1
        cursor.execute(
            "UPDATE billing_billsequence s SET next_number = v.n "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, n) WHERE s.id = v.id",
            [[s[0] for s in sequences.values()], [s[2] for s in sequences.values()]],
        )
    return numbers


def _mark_issued(
    bills: Sequence[_ToNumber], *, now: dt.datetime, due: dt.datetime | None
) -> dict[int, str]:
    """Number draft bills in id order and make them issued; return their printed numbers.

    The year in a number is the year of issue in the account's time zone.
    """
    ordered = sorted(bills, key=lambda b: b.bill_id)
    taken = _take_numbers([b.organisation_id for b in ordered])
    printed: dict[int, str] = {}
    sequence_numbers, references = [], []
    for bill, (prefix, sequence_number) in zip(ordered, taken, strict=True):
        year = now.astimezone(zoneinfo.ZoneInfo(bill.time_zone)).year
        number = bill_number_format(prefix=prefix, year=year, sequence_number=sequence_number)
        printed[bill.bill_id] = number
        sequence_numbers.append(sequence_number)
        references.append(
            bill_payment_reference(account_number=bill.account_number, bill_number=number)
        )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE billing_bill b SET status = 'issued', sequence_number = v.s, number = v.n,
                payment_reference = v.r, issued_at = %s, due_at = %s
            FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) AS v(id, s, n, r)
            WHERE b.id = v.id AND b.status = 'draft'
            """,
            [
                now,
                due,
                [b.bill_id for b in ordered],
                sequence_numbers,
                [printed[b.bill_id] for b in ordered],
                references,
            ],
        )
        if cursor.rowcount != len(ordered):
            raise BillError(_("Only a draft bill can be issued."))
    return printed


def _receivables(account_ids: Iterable[int], currency: str) -> dict[int, int]:
    """Ledger account ids of the accounts' receivables, created set-wise on first use."""
    codes = {
        account_id: f"{LedgerAccount.Kind.RECEIVABLE}:{account_id}:{currency}"
        for account_id in account_ids
    }
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO billing_ledgeraccount (code, kind, currency, name)
            SELECT c, %s, %s, replace(c, ':', ' ') FROM unnest(%s::text[]) AS t(c)
            ON CONFLICT (code) DO NOTHING
            """,
            [LedgerAccount.Kind.RECEIVABLE, currency, list(codes.values())],
        )
        cursor.execute(
            "SELECT code, id FROM billing_ledgeraccount WHERE code = ANY(%s)",
            [list(codes.values())],
        )
        ids = dict(cursor.fetchall())
    return {account_id: ids[code] for account_id, code in codes.items()}


def _issue_postings(
    draft: _BillDraft, receivable: int, ledgers: dict[tuple[str, str], int]
) -> list[tuple[int, int]]:
    """Receivable debited with the total; revenue per utility kind, adjustments, tax credited."""
    currency = draft.account.currency
    credits: dict[int, int] = defaultdict(int)
    for line in draft.lines:
        if line.ledger_key == "tax":
            key = (LedgerAccount.Kind.TAX, "")
        elif line.ledger_key == "adjustments":
            key = (LedgerAccount.Kind.ADJUSTMENTS, "")
        else:
            key = (LedgerAccount.Kind.REVENUE, line.ledger_key)
        if (key[0], key[1] + currency) not in ledgers:
            ledgers[(key[0], key[1] + currency)] = ledger_account_get(
                kind=key[0], currency=currency, key=key[1]
            ).pk
        credits[ledgers[(key[0], key[1] + currency)]] -= line.amount
    postings = [(receivable, draft.subtotal + draft.tax), *credits.items()]
    return [(ledger, amount) for ledger, amount in postings if amount]


def _post_issues(
    issued: Sequence[tuple[int, str, _BillDraft]], *, now: dt.datetime, actor_label: str
) -> None:
    """One BILL journal entry per issued bill (id, number, draft), set-wise."""
    by_currency: dict[str, list[int]] = defaultdict(list)
    for _id, _n, draft in issued:
        by_currency[draft.account.currency].append(draft.account.pk)
    receivables: dict[tuple[int, str], int] = {}
    for currency, account_ids in by_currency.items():
        for account_id, ledger in _receivables(account_ids, currency).items():
            receivables[(account_id, currency)] = ledger
    ledgers: dict[tuple[str, str], int] = {}
    entries: list[tuple[int, str, _BillDraft, list[tuple[int, int]]]] = []
    for bill_id, number, draft in issued:
        postings = _issue_postings(
            draft, receivables[(draft.account.pk, draft.account.currency)], ledgers
        )
        if postings:
            entries.append((bill_id, number, draft, postings))
    if not entries:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO billing_journalentry (kind, account_id, currency, memo, idempotency_key,
                effective_date, created_at, created_by_label)
            SELECT %s, a, c, m, k, %s, %s, %s
            FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) AS v(a, c, m, k)
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING idempotency_key, id
            """,
            [
                JournalEntry.Kind.BILL,
                now.date(),
                now,
                actor_label[:254],
                [draft.account.pk for _, _, draft, _ in entries],
                [draft.account.currency for _, _, draft, _ in entries],
                [
                    f"bill {number} of account {draft.account.number}"
                    for _, number, draft, _ in entries
                ],
                [_issue_key(bill_id) for bill_id, _, _, _ in entries],
            ],
        )
        entry_ids = dict(cursor.fetchall())
        rows = [
            (entry_ids[_issue_key(bill_id)], ledger, amount)
            for bill_id, _, _, postings in entries
            if _issue_key(bill_id) in entry_ids
            for ledger, amount in postings
        ]
        if rows:
            # One statement for all entries: the ledger trigger checks each entry balances.
            cursor.execute(
                "INSERT INTO billing_posting (entry_id, ledger_account_id, amount) "
                "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[])",
                [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]],
            )


def _issue_key(bill_id: int) -> str:
    return f"bill:{bill_id}:issue"


def _due(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(days=settings.BILLING_DUE_DAYS)


def _account_row(account: Account) -> _AccountRow:
    return _AccountRow(
        account.pk, account.number, account.currency, account.time_zone, account.organisation_id
    )


def _draft_of(bill: Bill) -> _BillDraft:
    """A stored bill as a draft again, for posting it (lines with their ledger keys)."""
    kinds = dict(
        ServicePoint.objects.filter(
            pk__in={line.service_point_id for line in bill.lines.all() if line.service_point_id}
        ).values_list("pk", "kind")
    )
    draft = _BillDraft(_account_row(bill.account))
    for line in bill.lines.all():
        if line.kind == BillLine.Kind.TAX:
            key = "tax"
        elif line.kind == BillLine.Kind.ADJUSTMENT or line.service_point_id is None:
            key = "adjustments"
        else:
            key = kinds[line.service_point_id]
        draft.lines.append(
            _LineDraft(
                line.kind,
                line.service_point_id,
                line.label,
                line.band,
                line.quantity,
                line.unit,
                line.unit_price,
                line.amount,
                line.estimated,
                key,
            )
        )
    return draft


# --- Bill runs ----------------------------------------------------------------------------------


def bill_run_execute(
    *,
    period_start: dt.date,
    actor: Actor,
    now: dt.datetime,
    chunk_size: int = DEFAULT_CHUNK,
) -> BillRun:
    """Bill and issue every postpaid account for the month starting `period_start`.

    Idempotent: the month's run is created once; running it again after it finished changes
    nothing, and an interrupted run resumes where it stopped. Accounts without a tariff for the
    month, or whose tariff cannot price it, are counted as skipped.

    :raises BillError: when `period_start` is not the first day of a month.
    """
    period_end = _check_month(period_start)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_billrun (period_start, period_end, status, bills, skipped, "
            "error, started_at, created_by_label) VALUES (%s, %s, %s, 0, 0, '', %s, %s) "
            "ON CONFLICT (period_start) DO NOTHING",
            [period_start, period_end, BillRun.Status.RUNNING, now, actor.label[:254]],
        )
    run = BillRun.objects.get(period_start=period_start)
    if run.status == BillRun.Status.DONE:
        return run
    billed = Bill.objects.filter(period_start=period_start, credit_note_for__isnull=True)
    todo = list(
        postpaid_accounts_for_month(period_start=period_start)
        .exclude(pk__in=billed.values("account_id"))
        .order_by("time_zone", "pk")
        .values_list("pk", "number", "currency", "time_zone", "organisation_id")
    )
    by_zone: dict[str, list[_AccountRow]] = defaultdict(list)
    for row in todo:
        by_zone[row[3]].append(_AccountRow(*row))
    problems: dict[int, str] = {}
    try:
        for zone_name, accounts in by_zone.items():
            for i in range(0, len(accounts), chunk_size):
                problems.update(
                    _run_chunk(
                        run,
                        accounts=accounts[i : i + chunk_size],
                        zone_name=zone_name,
                        period_end=period_end,
                        now=now,
                        actor=actor,
                    )
                )
    except Exception as exc:
        BillRun.objects.filter(pk=run.pk).update(
            status=BillRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    with transaction.atomic():
        run = BillRun.objects.select_for_update().get(pk=run.pk)
        if run.status == BillRun.Status.DONE:  # finished meanwhile by another worker
            return run
        run.bills = Bill.objects.filter(run=run).count()
        run.skipped = (
            postpaid_accounts_for_month(period_start=period_start)
            .exclude(pk__in=billed.values("account_id"))
            .count()
        )
        run.status = BillRun.Status.DONE
        run.finished_at = now
        run.error = "\n".join(f"account {acc}: {msg}" for acc, msg in problems.items())[:2000]
        run.save(update_fields=["bills", "skipped", "status", "finished_at", "error"])
        audit_record(
            actor=actor,
            event=AuditEvent.BILL_RUN_FINISHED,
            target=run,
            data={"period": f"{period_start:%Y-%m}", "bills": run.bills, "skipped": run.skipped},
        )
    return run


def _run_chunk(
    run: BillRun,
    *,
    accounts: Sequence[_AccountRow],
    zone_name: str,
    period_end: dt.date,
    now: dt.datetime,
    actor: Actor,
) -> dict[int, str]:
    with transaction.atomic():
        # Serialises workers on the same run: the second finds these accounts billed.
        BillRun.objects.select_for_update().filter(pk=run.pk).first()
        drafts, problems = _price_chunk(accounts, run.period_start, period_end, zone_name)
        created = _insert_drafts(
            drafts, period_start=run.period_start, period_end=period_end, run_id=run.pk, now=now
        )
        if created:
            numbers = _mark_issued(
                [
                    _ToNumber(bill_id, d.account.organisation_id, d.account.number, zone_name)
                    for bill_id, d in created
                ],
                now=now,
                due=_due(now),
            )
            _post_issues(
                [(bill_id, numbers[bill_id], d) for bill_id, d in created],
                now=now,
                actor_label=actor.label,
            )
    return problems


# --- One bill -----------------------------------------------------------------------------------


@transaction.atomic
def bill_create(
    *,
    account: Account,
    period_start: dt.date,
    actor: Actor,
    now: dt.datetime,
    adjustments: Sequence[tuple[str, int]] = (),
) -> Bill:
    """Draft the bill of one postpaid account for one month, outside a run.

    `adjustments` are (label, amount in minor units) lines added as stated, untaxed.

    :raises BillError: for a prepaid account, a period that is not a month, an account already
        billed for the period, no tariff for the month, or an adjustment without a label.
    """
    period_end = _check_month(period_start)
    if account.payment_mode != Account.PaymentMode.POSTPAID:
        raise BillError(_("Only postpaid accounts get bills."))
    for label, amount in adjustments:
        if not label.strip() or not amount:
            raise BillError(_("An adjustment needs a label and a non-zero amount."))
    row = _account_row(account)
    drafts, problems = _price_chunk([row], period_start, period_end, account.time_zone)
    if problems:
        raise BillError(_("The account cannot be priced: %s") % problems[account.pk])
    if not drafts:
        raise BillError(_("The account has no tariff for this month."))
    draft = drafts[0]
    tax_lines = [line for line in draft.lines if line.kind == BillLine.Kind.TAX]
    draft.lines = [line for line in draft.lines if line.kind != BillLine.Kind.TAX]
    for label, amount in adjustments:
        draft.lines.append(
            _LineDraft(
                BillLine.Kind.ADJUSTMENT,
                None,
                label.strip()[:200],
                "",
                Decimal(1),
                "",
                from_minor(amount, account.currency),
                amount,
                False,
                "adjustments",
            )
        )
    draft.lines.extend(tax_lines)
    created = _insert_drafts(
        [draft], period_start=period_start, period_end=period_end, run_id=None, now=now
    )
    if not created:
        raise BillError(_("The account already has a bill for this month."))
    bill = Bill.objects.select_related("account").get(pk=created[0][0])
    audit_record(
        actor=actor,
        event=AuditEvent.BILL_CREATED,
        account=account,
        target=bill,
        data={
            "number": account.number,
            "period": f"{period_start:%Y-%m}",
            "total": format_minor(bill.total, bill.currency),
        },
    )
    return bill


def _to_number(bill: Bill) -> _ToNumber:
    return _ToNumber(bill.pk, bill.organisation_id, bill.account.number, bill.account.time_zone)


def _locked(bill: Bill) -> Bill:
    return Bill.objects.select_for_update().select_related("account").get(pk=bill.pk)


@transaction.atomic
def bill_issue(*, bill: Bill, actor: Actor, now: dt.datetime) -> Bill:
    """Give a draft bill the next number of its organisation, post it and make it issued.

    :raises BillError: when the bill is not a draft.
    """
    bill = _locked(bill)
    if bill.status != Bill.Status.DRAFT:
        raise BillError(_("Only a draft bill can be issued."))
    numbers = _mark_issued([_to_number(bill)], now=now, due=_due(now))
    _post_issues([(bill.pk, numbers[bill.pk], _draft_of(bill))], now=now, actor_label=actor.label)
    bill.refresh_from_db()
    audit_record(
        actor=actor,
        event=AuditEvent.BILL_ISSUED,
        account=bill.account,
        target=bill,
        data={
            "bill": bill.number,
            "number": bill.account.number,
            "total": format_minor(bill.total, bill.currency),
        },
    )
    return bill


@transaction.atomic
def bill_mark_paid(
    *, bill: Bill, actor: Actor, now: dt.datetime, paid_at: dt.datetime | None = None
) -> Bill:
    """Record that an issued bill was paid in full: clearing debited, receivable credited.

    :raises BillError: when the bill is not issued, or is a credit note.
    """
    bill = _locked(bill)
    if bill.status != Bill.Status.ISSUED or bill.credit_note_for_id is not None:
        raise BillError(_("Only an issued bill can be marked paid."))
    bill.status = Bill.Status.PAID
    bill.paid_at = paid_at or now
    bill.save(update_fields=["status", "paid_at"])
    if bill.total:
        receivable = _receivables([bill.account_id], bill.currency)[bill.account_id]
        clearing = ledger_account_get(
            kind=LedgerAccount.Kind.CLEARING, currency=bill.currency, key=PAYMENT_CLEARING_KEY
        )
        journal_post(
            kind=JournalEntry.Kind.BILL_PAYMENT,
            currency=bill.currency,
            memo=f"payment of bill {bill.number} of account {bill.account.number}",
            idempotency_key=f"bill:{bill.pk}:payment",
            postings=[(clearing.pk, bill.total), (receivable, -bill.total)],
            effective_date=bill.paid_at.date(),
            created_by_label=actor.label,
            now=now,
            account_id=bill.account_id,
        )
    audit_record(
        actor=actor,
        event=AuditEvent.BILL_PAID,
        account=bill.account,
        target=bill,
        data={"bill": bill.number, "number": bill.account.number},
    )
    return bill


@transaction.atomic
def bill_void(*, bill: Bill, reason: str, actor: Actor, now: dt.datetime) -> Bill:
    """Void an issued or paid bill: keep it, issue a credit note with its lines negated, and
    reverse its ledger entry. Return the credit note.

    :raises BillError: for an empty reason, a draft, a bill already void, or a credit note.
    """
    reason = reason.strip()
    if not reason:
        raise BillError(_("Voiding a bill needs a reason."))
    bill = _locked(bill)
    if bill.credit_note_for_id is not None:
        raise BillError(_("A credit note cannot be voided."))
    if bill.status not in (Bill.Status.ISSUED, Bill.Status.PAID):
        raise BillError(_("Only an issued or paid bill can be voided."))
    note = Bill.objects.create(
        account=bill.account,
        organisation=bill.organisation,
        period_start=bill.period_start,
        period_end=bill.period_end,
        currency=bill.currency,
        subtotal=-bill.subtotal,
        tax=-bill.tax,
        total=-bill.total,
        has_estimates=bill.has_estimates,
        credit_note_for=bill,
        created_at=now,
    )
    BillLine.objects.bulk_create(
        BillLine(
            bill=note,
            position=line.position,
            kind=line.kind,
            service_point_id=line.service_point_id,
            label=line.label,
            band=line.band,
            quantity=-line.quantity,
            unit=line.unit,
            unit_price=line.unit_price,
            amount=-line.amount,
            estimated=line.estimated,
        )
        for line in bill.lines.all()
    )
    # A credit note is settled against the receivable at once: nothing falls due.
    _mark_issued([_to_number(note)], now=now, due=None)
    issue_entry = JournalEntry.objects.filter(idempotency_key=_issue_key(bill.pk)).first()
    if issue_entry is not None:
        journal_post(
            kind=JournalEntry.Kind.REVERSAL,
            currency=bill.currency,
            memo=f"void of bill {bill.number}: {reason}",
            idempotency_key=f"bill:{bill.pk}:void",
            postings=[(p.ledger_account_id, -p.amount) for p in issue_entry.postings.all()],
            effective_date=now.date(),
            created_by_label=actor.label,
            now=now,
            account_id=bill.account_id,
            reverses_id=issue_entry.pk,
        )
    bill.status = Bill.Status.VOID
    bill.voided_at = now
    bill.void_reason = reason[:300]
    bill.save(update_fields=["status", "voided_at", "void_reason"])
    note.refresh_from_db()
    audit_record(
        actor=actor,
        event=AuditEvent.BILL_VOIDED,
        account=bill.account,
        target=bill,
        data={
            "bill": bill.number,
            "number": bill.account.number,
            "credit_note": note.number,
            "reason": reason[:300],
        },
    )
    return note


@transaction.atomic
def bill_pdf_download_record(*, bill: Bill, actor: Actor, language: str) -> None:
    """Audit that `actor` was handed the bill's PDF: a member on the portal, or staff in the
    admin (a staff read of personal data)."""
    audit_record(
        actor=actor,
        event=AuditEvent.BILL_PDF_DOWNLOADED,
        account=bill.account,
        target=bill,
        data={
            "bill": bill.number or "draft",
            "number": bill.account.number,
            "language": language,
        },
    )
