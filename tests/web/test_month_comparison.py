"""The account home's month comparison is like for like: this month so far against the same
elapsed days and time of day of last month and of the same month a year ago, and the panel says
which days. Imported and exported energy are rows of their own."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import translation

from meters.models import Meter, Register, RollupDaily, RollupHourly, ServicePoint
from meters.periods import ComparedSpan, comparison_spans
from meters.selectors.consumption import month_comparison
from portal.tenancy.models import Account
from portal.tenancy.roles import Role
from portal.tenancy.scopes import scopes_for
from tests.billing.helpers import supplied
from tests.factories import make_account, make_membership, make_user
from web.panels import usage_panel

TAIPEI = zoneinfo.ZoneInfo("Asia/Taipei")
LONDON = zoneinfo.ZoneInfo("Europe/London")
NOW = dt.datetime(2026, 12, 4, 15, 15, tzinfo=TAIPEI)
DASH = "\u2013"  # an en dash between the first and last day


def _local(
    year: int, month: int, day: int, hour: int, minute: int, *, zone: zoneinfo.ZoneInfo = TAIPEI
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=zone)


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        (
            _local(2026, 12, 4, 15, 15),
            [
                ComparedSpan(dt.date(2026, 12, 1), dt.date(2026, 12, 4), dt.time(15, 15)),
                ComparedSpan(dt.date(2026, 11, 1), dt.date(2026, 11, 4), dt.time(15, 15)),
                ComparedSpan(dt.date(2025, 12, 1), dt.date(2025, 12, 4), dt.time(15, 15)),
            ],
        ),
        (  # January: last month is last year's December
            _local(2027, 1, 1, 0, 30),
            [
                ComparedSpan(dt.date(2027, 1, 1), dt.date(2027, 1, 1), dt.time(0, 30)),
                ComparedSpan(dt.date(2026, 12, 1), dt.date(2026, 12, 1), dt.time(0, 30)),
                ComparedSpan(dt.date(2026, 1, 1), dt.date(2026, 1, 1), dt.time(0, 30)),
            ],
        ),
        (  # the 31st against the whole of a shorter month
            _local(2026, 3, 31, 9, 0),
            [
                ComparedSpan(dt.date(2026, 3, 1), dt.date(2026, 3, 31), dt.time(9, 0)),
                ComparedSpan(dt.date(2026, 2, 1), dt.date(2026, 2, 28), None),
                ComparedSpan(dt.date(2025, 3, 1), dt.date(2025, 3, 31), dt.time(9, 0)),
            ],
        ),
        (  # a leap day against last year's whole February
            _local(2028, 2, 29, 12, 0),
            [
                ComparedSpan(dt.date(2028, 2, 1), dt.date(2028, 2, 29), dt.time(12, 0)),
                ComparedSpan(dt.date(2028, 1, 1), dt.date(2028, 1, 29), dt.time(12, 0)),
                ComparedSpan(dt.date(2027, 2, 1), dt.date(2027, 2, 28), None),
            ],
        ),
    ],
)
def test_the_spans_compared_are_the_same_elapsed_days_and_time(
    as_of: dt.datetime, expected: list[ComparedSpan]
) -> None:
    assert list(comparison_spans(local_now=as_of)) == expected


def _daily(account: Account, sp: ServicePoint, days: Iterable[dt.date], wh: int, **kw: str) -> None:
    RollupDaily.objects.bulk_create(
        RollupDaily(
            service_point=sp,
            direction=kw.get("direction", "import"),
            day=day,
            account=account,
            consumption=wh,
            hours=24,
        )
        for day in days
    )


def _hourly(
    account: Account, sp: ServicePoint, start: dt.datetime, hours: int, wh: int, **kw: str
) -> None:
    """`hours` hours of `wh` each from `start`, and their day's daily rollup."""
    RollupHourly.objects.bulk_create(
        RollupHourly(
            service_point=sp,
            direction=kw.get("direction", "import"),
            hour=start + dt.timedelta(hours=i),
            account=account,
            consumption=wh,
            estimated=0,
            reading_count=4,
        )
        for i in range(hours)
    )


def _days(first: dt.date, count: int) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range(count)]


@pytest.mark.django_db
def test_a_month_in_progress_is_compared_with_the_same_days_and_hours() -> None:
    account, sp, _wallet = supplied()
    # This month: 1-3 Dec whole (1 kWh each), 4 Dec so far: 15 hours of 100 Wh.
    _daily(account, sp, _days(dt.date(2026, 12, 1), 3), 1000)
    _hourly(account, sp, _local(2026, 12, 4, 0, 0), 16, 100)  # 00:00 to 15:59, 15:00 begun
    _daily(account, sp, [dt.date(2026, 12, 4)], 1600)
    # November: every day 2 kWh, and 4 Nov by the hour: 24 hours of 50 Wh (the whole day).
    _daily(account, sp, [*_days(dt.date(2026, 11, 1), 3), *_days(dt.date(2026, 11, 5), 26)], 2000)
    _hourly(account, sp, _local(2026, 11, 4, 0, 0), 24, 50)
    _daily(account, sp, [dt.date(2026, 11, 4)], 1200)
    # A year ago: 1-31 Dec 2025 at 3 kWh, 4 Dec 2025 by the hour at 10 Wh.
    _daily(account, sp, _days(dt.date(2025, 12, 1), 3), 3000)
    _hourly(account, sp, _local(2025, 12, 4, 0, 0), 24, 10)
    _daily(account, sp, [dt.date(2025, 12, 4)], 240)
    _daily(account, sp, _days(dt.date(2025, 12, 5), 27), 3000)

    result = month_comparison(account_id=account.pk, as_of=NOW, time_zone="Asia/Taipei")
    (row,) = result.rows
    assert (row.kind, row.direction) == ("electricity", "import")
    # So far: everything recorded (3 days + 16 hours begun by 15:15).
    assert row.this_month == 3 * 1000 + 16 * 100
    # 1-3 Nov and 4 Nov up to 15:15 (the hours begun by then: 00:00 to 15:00), not the rest.
    assert row.last_month == 3 * 2000 + 16 * 50
    assert row.year_ago == 3 * 3000 + 16 * 10
    assert (result.this_month.first, result.this_month.last) == (
        dt.date(2026, 12, 1),
        dt.date(2026, 12, 4),
    )


@pytest.mark.django_db
def test_the_hours_of_the_last_day_are_wall_clock_hours_across_a_dst_change() -> None:
    london = make_account("London")
    Account.objects.filter(pk=london.pk).update(time_zone="Europe/London")
    london.refresh_from_db()
    account, sp, _wallet = supplied(london)
    assert sp.time_zone == "Europe/London"
    now = _local(2026, 11, 4, 15, 15, zone=LONDON)  # GMT
    # 4 Oct is summer time: 15:15 there is 14:15 UTC. The hour from 14:00 UTC (15:00 BST)
    # has begun by then; the one from 15:00 UTC (16:00 BST) has not.
    _hourly(account, sp, dt.datetime(2026, 10, 3, 23, 0, tzinfo=dt.UTC), 17, 100)
    result = month_comparison(account_id=account.pk, as_of=now, time_zone="Europe/London")
    (row,) = result.rows
    assert row.last_month == 16 * 100
    assert row.this_month == 0


@pytest.mark.django_db
def test_exported_energy_is_a_row_of_its_own_and_never_netted() -> None:
    account, sp, _wallet = supplied()
    meter = Meter.objects.get(installations__service_point=sp)
    Register.objects.create(meter=meter, code="2.8.0", direction="export", unit="Wh")
    _daily(account, sp, _days(dt.date(2026, 12, 1), 3), 9000)
    _daily(account, sp, _days(dt.date(2026, 12, 1), 3), 5000, direction="export")
    _daily(account, sp, _days(dt.date(2026, 11, 1), 3), 4000, direction="export")
    result = month_comparison(account_id=account.pk, as_of=NOW, time_zone="Asia/Taipei")
    assert [(r.direction, r.this_month, r.last_month) for r in result.rows] == [
        ("import", 27000, 0),
        ("export", 15000, 12000),
    ]
    with translation.override("en"):
        panel = usage_panel(account, scopes_for(Role.VIEWER), NOW)
    assert panel is not None
    rows = panel.context["rows"]
    assert [(r["label"], r["this_month"], r["exported"]) for r in rows] == [
        ("Electricity", 27.0, False),
        ("Electricity exported", 15.0, True),
    ]


@pytest.mark.django_db
def test_the_panel_says_which_days_it_compares_in_both_languages() -> None:
    account, _sp, _wallet = supplied()
    user = make_user()
    make_membership(user, Role.OWNER, account=account)
    client = Client()
    client.force_login(user)
    url = reverse("tenancy:account_home", args=[account.public_id])
    with time_machine.travel(NOW, tick=False), translation.override("en"):
        panel = usage_panel(account, scopes_for(Role.VIEWER), NOW)
        assert panel is not None
        assert (
            panel.context["this_span"],
            panel.context["last_span"],
            panel.context["year_ago_span"],
        ) == (f"1{DASH}4 Dec", f"1{DASH}4 Nov", f"1{DASH}4 Dec 2025")
        with translation.override("zh-hant"):
            chinese = usage_panel(account, scopes_for(Role.VIEWER), NOW)
        assert chinese is not None
        assert (
            chinese.context["this_span"],
            chinese.context["last_span"],
            chinese.context["year_ago_span"],
        ) == (f"12月1{DASH}4日", f"11月1{DASH}4日", f"2025年12月1{DASH}4日")
        # Data so that the table is drawn.
        RollupDaily.objects.create(
            service_point=_sp,
            direction="import",
            day=dt.date(2026, 12, 2),
            account=account,
            consumption=1000,
            hours=24,
        )
        page = " ".join(client.get(url).content.decode().split())
    assert f"1{DASH}4 Nov" in page and f"1{DASH}4 Dec 2025" in page
    assert "Like for like: each month from the 1st to the same day and time of day (15:15)." in page


def test_a_single_day_span_reads_as_one_day() -> None:
    from web.panels import _span_label

    span = ComparedSpan(dt.date(2026, 12, 1), dt.date(2026, 12, 1), dt.time(0, 30))
    with translation.override("en"):  # whatever language an earlier request left active
        assert _span_label(span, with_year=False) == "1 Dec"
    with translation.override("zh-hant"):
        assert _span_label(span, with_year=True) == "2026年12月1日"
