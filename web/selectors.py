"""Reads across tenancy, meters and billing for the organisation pages.

The accounts table of an organisation covers its whole subtree: thousands of accounts for a
large group. Its columns come from each app's set-based SQL fragments (billing.selectors
credit_cte, open_shortage_warnings_cte; meters.selectors month_consumption_cte,
last_contact_cte, open_alerts_cte),
joined here into one statement over the subtree, so that filtering and sorting by any column
happen in PostgreSQL before a page is cut: a page costs one query and its count one more,
whatever the page size or the subtree's size.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, overload

from django.core.paginator import Page, Paginator
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Count, Q

from billing.selectors import credit_cte, open_shortage_warnings_cte
from meters.models import Direction, UtilityKind
from meters.selectors.alerts import open_alerts_cte
from meters.selectors.consumption import service_point_base_unit
from meters.selectors.fleet import service_points_of_account
from meters.selectors.subtree import (
    KindTotal,
    last_contact_cte,
    month_consumption_cte,
    subtree_consumption_by_kind,
    subtree_exporting_kinds,
    subtree_utility_kinds,
)
from meters.units import FIXED_BASE_UNITS, in_display_units, kind_base_unit
from portal.lib.money import from_minor
from portal.tenancy.models import Account, Organisation

KINDS: tuple[str, ...] = tuple(UtilityKind.values)
# The table's key of a kind's exported energy (its imports are keyed by the kind alone).
EXPORT_KEYS: dict[str, str] = {kind: f"{kind}_export" for kind in KINDS}


def account_base_unit(*, account_id: int, kind: str, direction: str) -> str:
    """The base unit an account's consumption of a kind is in: its service points' (their
    registers say, for gas), else the kind's default (meters.units)."""
    if kind in FIXED_BASE_UNITS:
        return FIXED_BASE_UNITS[kind]
    point = (
        service_points_of_account(account_id=account_id).filter(kind=kind).order_by("pk").first()
    )
    if point is None:
        return kind_base_unit(kind)
    return service_point_base_unit(service_point_id=point.pk, kind=kind, direction=direction)


def kind_display_units(kind: str, base_units: int) -> Decimal:
    """Base units of a kind summed over many accounts, in the kind's default display unit."""
    return in_display_units(base_units, kind_base_unit(kind))


@contextmanager
def _without_jit(*, server_side: bool = False) -> Iterator[CursorWrapper]:
    """Yield a cursor in a transaction where PostgreSQL does not JIT-compile.

    The planner cannot know that every measure has one row per account, so it overestimates
    these statements by orders of magnitude and spends most of a large export's time
    compiling them (`make bench` web measures the export). A server-side
    cursor keeps a large export out of memory, unless the deployment turned them off (a
    transaction-pooling PgBouncer cannot hold them).
    """
    server_side = server_side and not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
    with transaction.atomic():
        with connection.cursor() as setting:
            setting.execute("SET LOCAL jit = off")
        with connection.chunked_cursor() if server_side else connection.cursor() as cursor:
            yield cursor


# --- The subtree ----------------------------------------------------------------------------


@dataclass
class OrganisationNode:
    """An organisation of a subtree with its open accounts: its own and its subtree's."""

    organisation: Organisation
    own_accounts: int
    level: int
    children: list[OrganisationNode] = field(default_factory=list)
    total_accounts: int = 0


def organisation_subtree(
    *, organisation: Organisation, withheld: Sequence[str] = ()
) -> list[OrganisationNode]:
    """Return the organisation and everything beneath it, in tree order (parents before their
    children, siblings by name), each with its open accounts (one query); `level` is the depth
    below `organisation` and `children` link the nodes into a tree whose root is the first.
    Organisations beneath a `withheld` path are left out."""
    found = Organisation.objects.subtree_of(organisation)
    for path in withheld:
        found = found.exclude(path__startswith=path)
    rows = found.annotate(
        own=Count("accounts", filter=Q(accounts__closed_at__isnull=True))
    ).order_by("depth", "name", "id")
    nodes: dict[int, OrganisationNode] = {}
    for org in rows:
        node = OrganisationNode(
            organisation=org,
            own_accounts=org.own,  # type: ignore[attr-defined]
            level=org.depth - organisation.depth,
        )
        nodes[org.pk] = node
        if org.parent_id in nodes and org.pk != organisation.pk:
            nodes[org.parent_id].children.append(node)
    ordered: list[OrganisationNode] = []

    def walk(node: OrganisationNode) -> int:
        ordered.append(node)
        node.total_accounts = node.own_accounts + sum(walk(child) for child in node.children)
        return node.total_accounts

    if organisation.pk in nodes:
        walk(nodes[organisation.pk])
    return ordered


def organisation_utility_kinds(
    *, organisation: Organisation, withheld: Sequence[str] = ()
) -> list[str]:
    """The utility kinds supplied beneath the organisation, in KINDS order (one query)."""
    found = set(subtree_utility_kinds(organisation_path=organisation.path, withheld=withheld))
    return [kind for kind in KINDS if kind in found]


def organisation_exporting_kinds(
    *, organisation: Organisation, withheld: Sequence[str] = ()
) -> list[str]:
    """The utility kinds of which meters beneath the organisation export (solar panels feeding
    the grid), in KINDS order (one query): the table's exported-energy columns."""
    found = set(subtree_exporting_kinds(organisation_path=organisation.path, withheld=withheld))
    return [kind for kind in KINDS if kind in found]


# --- The accounts table ---------------------------------------------------------------------


@dataclass(frozen=True)
class AccountFilters:
    """What the accounts table is narrowed to; empty values do not filter."""

    search: str = ""  # part of the account number or name, any case
    subsidiary_path: str = ""  # an organisation of the subtree: its accounts and those below
    payment_mode: str = ""
    low_only: bool = False  # prepaid, open, and low on credit (see billing.selectors.credit_cte)
    with_alerts: bool = False  # at least one open alert (see OrganisationAccounts)


# Sort keys and their SQL over the joined row `s` (scope), `c` (credit), `u` (usage),
# `ct` (contact) and `al` (alerts). Days left: an empty wallet without a known average is as
# bad as none left, so it sorts with the zeros.
SORT_COLUMNS: dict[str, str] = {
    "number": "s.number",
    "name": "lower(s.name)",
    "subsidiary": "lower(s.organisation_name)",
    "payment_mode": "s.payment_mode",
    "balance": "c.balance",
    "days_left": "COALESCE(c.days_left, CASE WHEN c.balance <= 0 THEN 0 END)",
    **{kind: f"u.{kind}" for kind in KINDS},
    **{key: f"u.{key}" for key in EXPORT_KEYS.values()},
    "last_contact": "ct.last_contact",
    "alerts": "COALESCE(al.open_alerts, 0)",
}
# Ties are broken by these (in the same direction), then by account number.
_TIE_BREAKS: dict[str, str] = {"days_left": "c.balance"}
# The measure each sort key reads (the others need the accounts alone).
_SORT_MEASURES: dict[str, str] = {
    "balance": "credit",
    "days_left": "credit",
    **dict.fromkeys(KINDS, "usage"),
    **dict.fromkeys(EXPORT_KEYS.values(), "usage"),
    "last_contact": "contact",
    "alerts": "alerts",
}
SORT_CHOICES: tuple[str, ...] = tuple(key for name in SORT_COLUMNS for key in (name, f"-{name}"))
DEFAULT_SORT = "number"


@dataclass(frozen=True)
class AccountRow:
    """One account of the table, with its measures (None where it has none)."""

    public_id: uuid.UUID
    number: str
    name: str
    organisation_name: str
    payment_mode: str
    time_zone: str
    closed_at: dt.datetime | None
    balance: int | None  # minor units of `currency`; prepaid accounts with a wallet only
    currency: str
    average_daily_cost: int | None
    days_left: Decimal | None
    low: bool
    consumption: dict[str, int]  # base units imported this month, per utility kind with data
    export: dict[str, int]  # base units exported this month (never netted into consumption)
    last_contact: dt.datetime | None
    open_alerts: int  # open meter events, and open low-credit warnings if the reader may see them

    @property
    def balance_amount(self) -> Decimal | None:
        return from_minor(self.balance, self.currency) if self.balance is not None else None

    @property
    def payment_mode_label(self) -> str:
        return str(Account.PaymentMode(self.payment_mode).label)

    @property
    def usage(self) -> list[Decimal | None]:
        """This month's consumption per kind of KINDS, in display units (None: no data)."""
        return [
            kind_display_units(kind, self.consumption[kind]) if kind in self.consumption else None
            for kind in KINDS
        ]

    @property
    def export_usage(self) -> list[Decimal | None]:
        """This month's exported energy per kind of KINDS, in display units (None: no data)."""
        return [
            kind_display_units(kind, self.export[kind]) if kind in self.export else None
            for kind in KINDS
        ]


_ROW_COLUMNS = f"""
    s.public_id, s.number, s.name, s.organisation_name, s.payment_mode, s.time_zone,
    s.closed_at, c.balance, c.currency, c.average_daily_cost, c.days_left,
    COALESCE(c.low, false) AND s.closed_at IS NULL AS low,
    {", ".join(f"u.{kind}" for kind in KINDS)},
    {", ".join(f"u.{key}" for key in EXPORT_KEYS.values())},
    ct.last_contact, COALESCE(al.open_alerts, 0) AS open_alerts
"""


def _row(values: tuple[Any, ...]) -> AccountRow:
    n = len(KINDS)
    (
        public_id,
        number,
        name,
        org_name,
        mode,
        zone,
        closed_at,
        balance,
        currency,
        average,
        days_left,
        low,
    ) = values[:12]
    usage = values[12 : 12 + n]
    export = values[12 + n : 12 + 2 * n]
    last_contact, open_alerts = values[12 + 2 * n :]
    return AccountRow(
        public_id=public_id,
        number=number,
        name=name,
        organisation_name=org_name,
        payment_mode=mode,
        time_zone=zone,
        closed_at=closed_at,
        balance=balance,
        currency=currency or "",
        average_daily_cost=average,
        days_left=days_left,
        low=bool(low),
        consumption={
            kind: int(value) for kind, value in zip(KINDS, usage, strict=True) if value is not None
        },
        export={
            kind: int(value) for kind, value in zip(KINDS, export, strict=True) if value is not None
        },
        last_contact=last_contact,
        open_alerts=int(open_alerts),
    )


def _open_alerts_sql(*, credit_alerts: bool) -> tuple[str, dict[str, Any]]:
    """Rows (account_id, open_alerts) over `scope(account_id, today)`: the open meter events
    (meters.selectors.open_alerts_cte) and, when the reader may see billing data, the open
    low-credit warnings (billing.selectors.open_shortage_warnings_cte): what the account's
    alerts page lists as open for that reader."""
    events_sql, params = open_alerts_cte()
    if not credit_alerts:
        return events_sql, params
    warnings_sql, warnings_params = open_shortage_warnings_cte()
    sql = f"""
        SELECT account_id, sum(n)::bigint AS open_alerts FROM (
            SELECT account_id, open_alerts AS n FROM ({events_sql}) events
            UNION ALL
            SELECT account_id, count(*) FROM ({warnings_sql}) warnings GROUP BY account_id
        ) either GROUP BY account_id
    """  # noqa: S608 - only fixed fragments are formatted in
    return sql, {**params, **warnings_params}


def account_open_alert_count(*, account: Account, as_of: dt.datetime, credit_alerts: bool) -> int:
    """The account's open alerts, counted as the organisation accounts table counts them (the
    same statement over a scope of one account), for the account home and for checks that the
    two agree. `credit_alerts`: whether the reader may see billing data (`billing:read`)."""
    sql, params = _open_alerts_sql(credit_alerts=credit_alerts)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH scope AS (
                SELECT a.id AS account_id,
                       (%(oa_now)s::timestamptz AT TIME ZONE a.time_zone)::date AS today
                FROM tenancy_account a WHERE a.id = %(oa_account)s
            )
            SELECT COALESCE(sum(open_alerts), 0) FROM ({sql}) alerts
            """,  # noqa: S608 - only fixed fragments are formatted in
            {**params, "oa_now": as_of, "oa_account": account.pk},
        )
        return int(cursor.fetchone()[0])


class OrganisationAccounts:
    """The accounts of an organisation's subtree, filtered and sorted, read lazily.

    Made for Paginator: `count()` is one query and a slice one more; iterating streams every
    row through a server-side cursor (for exports). Nothing is read until asked.

    `credit_alerts` says whether the reader may see billing data: then the open alerts count
    (and the alerts filter and sort) include the open low-credit warnings, as the account's
    alerts page does for them.
    """

    def __init__(
        self,
        *,
        organisation: Organisation,
        as_of: dt.datetime,
        credit_alerts: bool,
        filters: AccountFilters | None = None,
        sort: str = DEFAULT_SORT,
        withheld: Sequence[str] = (),
    ) -> None:
        if sort not in SORT_CHOICES:
            raise ValueError(f"unknown sort {sort!r}")
        self.filters = filters or AccountFilters()
        self.sort = sort
        self._count: int | None = None
        self._pages: dict[tuple[int, int], list[AccountRow]] = {}
        self._params: dict[str, Any] = {
            "now": as_of,
            "root": organisation.path + "%",
            "withheld": [path + "%" for path in withheld],
        }
        conditions = ["NOT o.path LIKE ANY(%(withheld)s)"]
        if self.filters.search:
            self._params["q"] = self.filters.search.lower()
            conditions.append(
                "(strpos(lower(a.number), %(q)s) > 0 OR strpos(lower(a.name), %(q)s) > 0)"
            )
        if self.filters.subsidiary_path:
            self._params["sub"] = self.filters.subsidiary_path + "%"
            conditions.append("o.path LIKE %(sub)s")
        if self.filters.payment_mode:
            self._params["mode"] = self.filters.payment_mode
            conditions.append("a.payment_mode = %(mode)s")
        self._scope = f"""
            SELECT a.id AS account_id, a.public_id, a.number, a.name, a.payment_mode,
                   a.time_zone, a.closed_at, o.name AS organisation_name,
                   (%(now)s::timestamptz AT TIME ZONE a.time_zone)::date AS today
            FROM tenancy_account a
            JOIN tenancy_organisation o ON o.id = a.organisation_id
            WHERE o.path LIKE %(root)s {"".join(f" AND {c}" for c in conditions)}
        """  # noqa: S608 - only fixed fragments are formatted in
        self._post = []
        if self.filters.low_only:
            self._post.append("COALESCE(c.low, false) AND s.closed_at IS NULL")
        if self.filters.with_alerts:
            self._post.append("COALESCE(al.open_alerts, 0) > 0")
        key = sort.lstrip("-")
        direction = "DESC" if sort.startswith("-") else "ASC"
        order = [f"{SORT_COLUMNS[key]} {direction} NULLS LAST"]
        if key in _TIE_BREAKS:
            order.append(f"{_TIE_BREAKS[key]} {direction} NULLS LAST")
        self._order = ", ".join([*order, "s.number", "s.account_id"])
        credit_sql, credit_params = credit_cte()
        usage_sql, usage_params = month_consumption_cte()
        contact_sql, contact_params = last_contact_cte(as_of=as_of)
        alerts_sql, alerts_params = _open_alerts_sql(credit_alerts=credit_alerts)
        self._params.update(credit_params, **usage_params, **contact_params, **alerts_params)
        # Imported and exported energy in columns of their own: never netted, never added.
        pivot = ", ".join(
            f"sum(consumption) FILTER (WHERE kind = '{kind}' AND direction = '{direction}')"
            f" AS {key}"
            for direction, keys in (
                (Direction.IMPORT, {kind: kind for kind in KINDS}),
                (Direction.EXPORT, EXPORT_KEYS),
            )
            for kind, key in keys.items()
        )
        usage_pivot = f"SELECT account_id, {pivot} FROM usage_rows GROUP BY account_id"  # noqa: S608
        # name -> (CTE, its join). Each is computed once for the accounts it is joined to
        # (MATERIALIZED: inlined, PostgreSQL would re-run it per account); a page reads only the
        # measures its filters and sort need over the whole subtree, then all of them over the
        # page's accounts alone, and a count only those its filters need.
        self._measures: dict[str, tuple[str, str]] = {
            "credit": (
                f"credit AS MATERIALIZED ({credit_sql})",
                "LEFT JOIN credit c ON c.account_id = s.account_id AND s.payment_mode = 'prepaid'",
            ),
            "usage": (
                f"usage_rows AS MATERIALIZED ({usage_sql}), usage AS ({usage_pivot})",
                "LEFT JOIN usage u ON u.account_id = s.account_id",
            ),
            "contact": (
                f"contact AS MATERIALIZED ({contact_sql})",
                "LEFT JOIN contact ct ON ct.account_id = s.account_id",
            ),
            "alerts": (
                f"alerts AS MATERIALIZED ({alerts_sql})",
                "LEFT JOIN alerts al ON al.account_id = s.account_id",
            ),
        }
        self._filtered_by = [
            name
            for name, used in (
                ("credit", self.filters.low_only),
                ("alerts", self.filters.with_alerts),
            )
            if used
        ]
        self._cut_by = list(
            dict.fromkeys([*self._filtered_by, *filter(None, [_SORT_MEASURES.get(key)])])
        )

    def _with(self, names: list[str]) -> tuple[str, str]:
        """The CTEs and joins of these measures."""
        ctes = "".join(f", {self._measures[name][0]}" for name in names)
        joins = " ".join(self._measures[name][1] for name in names)
        return ctes, joins

    def _where(self) -> str:
        return " AND ".join(self._post) if self._post else "true"

    def _select(self, *, limit: int | None, offset: int) -> tuple[str, dict[str, Any]]:
        params = dict(self._params)
        ctes, joins = self._with(list(self._measures))
        if limit is None:
            sql = f"""
                WITH scope AS ({self._scope}) {ctes}
                SELECT {_ROW_COLUMNS}
                FROM scope s {joins}
                WHERE {self._where()}
                ORDER BY {self._order}
            """  # noqa: S608 - only fixed fragments are formatted in
            return sql, params
        params.update(limit=limit, offset=offset)
        # The page's accounts first, from the measures that filter and sort alone (the inner
        # `scope` is the subtree); then every measure of those accounts only (the outer
        # `scope` is the page).
        cut_ctes, cut_joins = self._with(self._cut_by)
        sql = f"""
            WITH scope AS MATERIALIZED (
                WITH scope AS ({self._scope}) {cut_ctes}
                SELECT s.*, count(*) OVER () AS matching FROM scope s {cut_joins}
                WHERE {self._where()}
                ORDER BY {self._order}
                LIMIT %(limit)s OFFSET %(offset)s
            ) {ctes}
            SELECT {_ROW_COLUMNS}, s.matching
            FROM scope s {joins}
            ORDER BY {self._order}
        """  # noqa: S608 - only fixed fragments are formatted in
        return sql, params

    def count(self) -> int:
        """Return how many accounts match (one query, remembered)."""
        if self._count is None:
            ctes, joins = self._with(self._filtered_by)
            with _without_jit() as cursor:
                cursor.execute(
                    f"""
                    WITH scope AS ({self._scope}) {ctes}
                    SELECT count(*) FROM scope s {joins} WHERE {self._where()}
                    """,  # noqa: S608 - only fixed fragments are formatted in
                    self._params,
                )
                self._count = int(cursor.fetchone()[0])
        return self._count

    def __len__(self) -> int:
        return self.count()

    @overload
    def __getitem__(self, index: int) -> AccountRow: ...
    @overload
    def __getitem__(self, index: slice) -> list[AccountRow]: ...
    def __getitem__(self, index: int | slice) -> AccountRow | list[AccountRow]:
        if isinstance(index, int):
            rows = self.rows(offset=index, limit=1)
            if not rows:
                raise IndexError(index)
            return rows[0]
        start = index.start or 0
        if index.step not in (None, 1) or start < 0 or (index.stop is not None and index.stop < 0):
            raise ValueError("only forward slices of the accounts can be read")
        if index.stop is None:
            return list(self)[start:]
        return self.rows(offset=start, limit=max(0, index.stop - start))

    def rows(self, *, offset: int, limit: int) -> list[AccountRow]:
        """Return one page of rows (one query, remembered); a page that has rows also tells
        how many accounts match, so count() asks nothing more."""
        for (known_offset, known_limit), known in self._pages.items():
            # A page read whole also answers the paginator's shorter slice of its last page.
            if known_offset == offset and known_limit >= limit:
                return known[:limit]
        if (offset, limit) not in self._pages:
            sql, params = self._select(limit=limit, offset=offset)
            with _without_jit() as cursor:
                cursor.execute(sql, params)
                found = cursor.fetchall()
            if found:
                self._count = int(found[0][-1])
            elif offset == 0:
                self._count = 0
            self._pages[(offset, limit)] = [_row(values[:-1]) for values in found]
        return self._pages[(offset, limit)]

    def page(self, number: object, *, size: int) -> Page[AccountRow]:
        """Return page `number` (1 for anything unreadable, the last one past the end) in one
        query when it exists: its rows are read first and carry the count."""
        try:
            # Capped: a page past the end is the last one anyway, and an OFFSET beyond bigint
            # would be a database error.
            wanted = min(max(1, int(str(number))), 10**9)
        except ValueError:
            wanted = 1
        self.rows(offset=(wanted - 1) * size, limit=size)
        return Paginator(self, size).get_page(wanted)

    def __iter__(self) -> Iterator[AccountRow]:
        sql, params = self._select(limit=None, offset=0)
        with _without_jit(server_side=True) as cursor:
            cursor.execute(sql, params)
            while batch := cursor.fetchmany(1000):
                for values in batch:
                    yield _row(values)


def organisation_accounts_table(
    *,
    organisation: Organisation,
    as_of: dt.datetime,
    credit_alerts: bool,
    filters: AccountFilters | None = None,
    sort: str = DEFAULT_SORT,
    withheld: Sequence[str] = (),
) -> OrganisationAccounts:
    """Return the subtree's accounts with balance, days left, this month's imported and
    exported energy per kind, last contact and open alerts (low-credit warnings included when
    `credit_alerts`: the reader may see billing data), filtered and sorted in SQL (read
    lazily).

    :raises ValueError: for a sort key not in SORT_CHOICES.
    """
    return OrganisationAccounts(
        organisation=organisation,
        as_of=as_of,
        credit_alerts=credit_alerts,
        filters=filters,
        sort=sort,
        withheld=withheld,
    )


def organisation_low_balance(
    *,
    organisation: Organisation,
    as_of: dt.datetime,
    limit: int = 10,
    withheld: Sequence[str] = (),
) -> tuple[list[AccountRow], int]:
    """Return the subtree's prepaid accounts that are low on credit, worst first (fewest days
    left, then lowest balance), at most `limit`, and how many there are (one query)."""
    # The panel is shown to readers of billing data only (web.organisation_panels).
    table = OrganisationAccounts(
        organisation=organisation,
        as_of=as_of,
        credit_alerts=True,
        filters=AccountFilters(low_only=True),
        sort="days_left",
        withheld=withheld,
    )
    rows = table.rows(offset=0, limit=limit)
    return rows, table.count()


# --- Roll-ups for charts --------------------------------------------------------------------


def organisation_daily_consumption(
    *,
    organisation: Organisation,
    as_of: dt.datetime,
    days: int = 30,
    withheld: Sequence[str] = (),
) -> list[KindTotal]:
    """The subtree's energy or volume per utility kind, direction and local day, the last
    `days` days."""
    with _without_jit():
        return subtree_consumption_by_kind(
            organisation_path=organisation.path,
            as_of=as_of,
            bucket="day",
            periods=days,
            withheld=withheld,
        )


def organisation_monthly_consumption(
    *,
    organisation: Organisation,
    as_of: dt.datetime,
    months: int = 12,
    withheld: Sequence[str] = (),
) -> list[KindTotal]:
    """The subtree's energy or volume per utility kind, direction and month, the last `months`
    months (this one included, so far)."""
    with _without_jit():
        return subtree_consumption_by_kind(
            organisation_path=organisation.path,
            as_of=as_of,
            bucket="month",
            periods=months,
            withheld=withheld,
        )
