"""Credit warnings are alerts, wherever a member looks: the account home's alerts panel, the
alerts page, and the organisation accounts table (its count, its filter, its sort and its CSV);
and a used-up balance says so, with the emergency credit left and what happens next.

sub1 ─ short (prepaid, -261.89 TWD, 300.00 emergency credit, 27.86 a day; warned at 7, 3, 1
       and 0 days; one open leak and one acknowledged tamper alarm)
sub2 ─ fine (prepaid, 600.00 TWD, 40.00 a day: 15 days; warned long ago, since topped up)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import time_machine
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import translation

from billing.models import ShortageWarning
from billing.selectors import shortage_alerts_for_account
from billing.services.ledger import wallet_adjust, wallet_update
from meters.models import Meter, MeterEvent, ServicePoint
from portal.tenancy import selectors as tenancy_selectors
from portal.tenancy.models import Account
from portal.tenancy.roles import Role
from portal.tenancy.scopes import Scope, scopes_for
from portal.users.models import User
from tests.billing.helpers import charge_history, supplied
from tests.conftest import World
from tests.factories import SYSTEM, make_membership, make_user
from web.panels import Panel, alerts_panel, credit_panel
from web.selectors import (
    AccountFilters,
    account_open_alert_count,
    organisation_accounts_table,
)

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 12, 4, 7, 15, tzinfo=dt.UTC)  # 15:15 in Taipei, a Friday
TODAY = dt.date(2026, 12, 4)
ClientFor = Callable[[User], Client]


@pytest.fixture(autouse=True)
def _at_a_fixed_moment() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def _prepaid(account: Account, *, balance: int, daily: int, emergency: int = 0) -> ServicePoint:
    account, sp, wallet = supplied(account)
    if emergency:
        wallet_update(wallet=wallet, emergency_credit=emergency, actor=SYSTEM)
    wallet_adjust(
        wallet=wallet,
        amount=balance,
        reason="opening",
        idempotency_key=f"open-{account.pk}",
        actor=SYSTEM,
        as_of=NOW - dt.timedelta(days=20),
    )
    charge_history(account, sp, daily=daily, today=TODAY, as_of=NOW, consumption=8000)
    return sp


def _warn(account: Account, *, threshold: int, crossing: int = 0, level: int = 0) -> None:
    ShortageWarning.objects.create(
        account=account,
        threshold=threshold,
        crossing=crossing,
        level=level,
        balance=-26189,
        created_at=NOW - dt.timedelta(hours=threshold + 1),
    )


@dataclass
class Harbour:
    world: World
    short: Account
    fine: Account


@pytest.fixture
def harbour(world: World) -> Harbour:
    short, fine = world.acc1, world.acc2
    sp = _prepaid(short, balance=-26189, daily=2786, emergency=30000)
    for threshold in (7, 3, 1, 0):
        _warn(short, threshold=threshold)
    # The escalation to the managers above repeats the same shortage: not an alert of its own.
    _warn(short, threshold=0, level=1)
    meter = Meter.objects.get(installations__service_point=sp)
    for kind, acknowledged in (("leak", None), ("tamper_cover", NOW)):
        MeterEvent.objects.create(
            meter=meter,
            service_point=sp,
            account=short,
            kind=kind,
            severity=30,
            occurred_at=NOW - dt.timedelta(days=1),
            acknowledged_at=acknowledged,
        )
    _prepaid(fine, balance=600_00, daily=40_00)
    # Warned in an earlier fall (crossing 0), then topped up: resolved, not open.
    _warn(fine, threshold=7)
    _warn(fine, threshold=3, crossing=1)  # this fall, but 15 days left are above 3
    return Harbour(world=world, short=short, fine=fine)


def _panel(response: Any, name: str) -> Panel:
    panel: Panel = next(p for p in response.context["panels"] if p.template.endswith(name))
    return panel


def _table_counts(harbour: Harbour, *, credit_alerts: bool) -> dict[str, int]:
    rows = organisation_accounts_table(
        organisation=harbour.world.group, as_of=NOW, credit_alerts=credit_alerts
    )
    return {row.number: row.open_alerts for row in rows}


def _body(response: object) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()  # type: ignore[arg-type]


def test_every_open_credit_warning_is_an_alert_on_the_home_and_in_the_table(
    harbour: Harbour, client_for: ClientFor
) -> None:
    client = client_for(harbour.world.group_manager)
    home = client.get(reverse("tenancy:account_home", args=[harbour.short.public_id]))
    alerts = _panel(home, "alerts.html")
    # Four warnings (7, 3, 1 and 0 days) and the open leak; not the acknowledged alarm, not
    # the escalation.
    assert alerts.context["count"] == 5
    kinds = [row.kind for row in alerts.context["rows"]]
    assert "Credit used up" in kinds and "leak" in kinds and len(kinds) == 5
    page = home.content.decode()
    assert "5 open alerts" in page and "No open alerts" not in page

    assert _table_counts(harbour, credit_alerts=True) == {
        harbour.short.number: 5,
        harbour.fine.number: 0,
    }
    # The same count, however it is asked: the table's statement, the home, the alerts page.
    assert account_open_alert_count(account=harbour.short, as_of=NOW, credit_alerts=True) == 5
    listed = client.get(reverse("web:account_alerts", args=[harbour.short.public_id]))
    assert listed.context["page"].paginator.count == 5


def test_the_alerts_filter_sort_and_csv_count_credit_warnings(
    harbour: Harbour, client_for: ClientFor
) -> None:
    client = client_for(harbour.world.group_manager)
    url = reverse("web:organisation_accounts", args=[harbour.world.group.public_id])
    filtered = client.get(f"{url}?alerts=1")
    assert [row.number for row in filtered.context["page"].object_list] == [harbour.short.number]
    # Only the warnings, no meter event: still found by the filter.
    MeterEvent.objects.filter(account=harbour.short).update(acknowledged_at=NOW)
    filtered = client.get(f"{url}?alerts=1")
    assert [row.open_alerts for row in filtered.context["page"].object_list] == [4]
    ranked = client.get(f"{url}?sort=-alerts")
    assert ranked.context["page"].object_list[0].number == harbour.short.number

    response = client.get(
        reverse("web:organisation_accounts_csv", args=[harbour.world.group.public_id])
    )
    body = _body(response)
    rows = {row["account_number"]: row for row in csv.DictReader(io.StringIO(body))}
    assert rows[harbour.short.number]["open_alerts"] == "4"
    assert rows[harbour.fine.number]["open_alerts"] == "0"


@pytest.mark.parametrize(
    ("balance", "open_thresholds"),
    [
        (600_00, set()),  # 21.5 days left at 27.86 a day: above every threshold
        (150_00, {7}),  # 5.3 days
        (80_00, {7, 3}),  # 2.8 days
        (20_00, {7, 3, 1}),  # 0.7 days
        (0, {7, 3, 1, 0}),  # empty
        (-26189, {7, 3, 1, 0}),
    ],
)
def test_which_warnings_are_open_is_one_rule_for_the_page_the_home_and_the_table(
    harbour: Harbour, balance: int, open_thresholds: set[int]
) -> None:
    if balance != -26189:
        wallet_adjust(
            wallet=harbour.short.wallet,
            amount=balance + 26189,
            reason="to the case's balance",
            idempotency_key="case",
            actor=SYSTEM,
            as_of=NOW,
        )
    open_alerts = shortage_alerts_for_account(
        account_id=harbour.short.pk, as_of_day=TODAY, open_only=True
    )
    assert {alert.warning.threshold for alert in open_alerts} == open_thresholds
    expected = len(open_thresholds) + 1  # and the open leak
    assert _table_counts(harbour, credit_alerts=True)[harbour.short.number] == expected
    assert account_open_alert_count(account=harbour.short, as_of=NOW, credit_alerts=True) == (
        expected
    )
    panel = alerts_panel(harbour.short, scopes_for(Role.VIEWER), NOW)
    assert panel is not None and panel.context["count"] == expected
    filtered = organisation_accounts_table(
        organisation=harbour.world.group,
        as_of=NOW,
        credit_alerts=True,
        filters=AccountFilters(with_alerts=True),
    )
    assert harbour.short.number in {row.number for row in filtered}


def test_a_new_crossing_resolves_the_warnings_of_the_one_before(harbour: Harbour) -> None:
    # The fine account's crossing-0 warning is resolved; its crossing-1 one is not under 3.
    assert _table_counts(harbour, credit_alerts=True)[harbour.fine.number] == 0
    wallet_adjust(
        wallet=harbour.fine.wallet,
        amount=-550_00,  # 50.00 left: 1.2 days
        reason="a big day",
        idempotency_key="big",
        actor=SYSTEM,
        as_of=NOW,
    )
    assert _table_counts(harbour, credit_alerts=True)[harbour.fine.number] == 1
    assert [
        a.warning.crossing
        for a in shortage_alerts_for_account(
            account_id=harbour.fine.pk, as_of_day=TODAY, open_only=True
        )
    ] == [1]


@pytest.fixture
def meters_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Viewers without billing:read (no role is like that today; a role may be tomorrow)."""

    def scopes(role: Role) -> frozenset[Scope]:
        found = scopes_for(role)
        return found - {Scope.BILLING_READ} if role == Role.VIEWER else found

    monkeypatch.setattr(tenancy_selectors, "scopes_for", scopes)


def test_readers_without_billing_read_count_the_meter_alerts_they_can_open(
    harbour: Harbour, client_for: ClientFor, meters_only: None
) -> None:
    viewer = make_user()
    make_membership(viewer, Role.VIEWER, organisation=harbour.world.group)
    client = client_for(viewer)
    home = client.get(reverse("tenancy:account_home", args=[harbour.short.public_id]))
    assert not any(p.template.endswith("credit.html") for p in home.context["panels"])
    alerts = _panel(home, "alerts.html")
    assert alerts.context["count"] == 1
    assert [row.kind for row in alerts.context["rows"]] == ["leak"]
    page = home.content.decode()
    assert "Credit used up" not in page and "-261.89" not in page
    listed = client.get(reverse("web:account_alerts", args=[harbour.short.public_id]))
    assert listed.context["page"].paginator.count == 1

    url = reverse("web:organisation_accounts", args=[harbour.world.group.public_id])
    table = client.get(url)
    counts = {row.number: row.open_alerts for row in table.context["page"].object_list}
    assert counts == {harbour.short.number: 1, harbour.fine.number: 0}
    assert "low-credit warnings" not in table.content.decode()
    assert _table_counts(harbour, credit_alerts=False)[harbour.short.number] == 1
    assert account_open_alert_count(account=harbour.short, as_of=NOW, credit_alerts=False) == 1
    panel = alerts_panel(harbour.short, frozenset({"meters:read"}), NOW)
    assert panel is not None and panel.context["count"] == 1


# --- A used-up balance ----------------------------------------------------------------------


def _credit_text(client: Client, account: Account) -> str:
    home = client.get(reverse("tenancy:account_home", args=[account.public_id]))
    panel = _panel(home, "credit.html")
    assert panel.context["used_up"] is not None
    page = home.content.decode()
    start = page.index('id="panel-credit"')
    return " ".join(page[start : page.index("</section>", start)].split())


def test_a_used_up_balance_says_so_with_the_emergency_credit_left_and_what_happens_next(
    harbour: Harbour, client_for: ClientFor
) -> None:
    text = _credit_text(client_for(harbour.world.group_manager), harbour.short)
    assert "days left" not in text  # not "About 0.0 days left"
    assert "Your credit is used up." in text
    # 300.00 - 261.89 = 38.11; at 27.86 a day that is 1.3 days.
    assert (
        "You are using emergency credit: 38.11 TWD of 300.00 TWD left, about 1.3 days at the "
        "recent average." in text
    )
    assert (
        "When it runs out, the supply is switched off, but only on a weekday between 09:00 "
        "and 16:00 (Asia/Taipei time), never on a public holiday. A top-up switches it back "
        "on straight away, at any hour." in text
    )
    assert "A top-up of 261.89 TWD brings the balance back to zero." in text

    chinese = client_for(harbour.world.group_manager)
    chinese.cookies["django_language"] = "zh-hant"
    # The request activates Chinese in this thread: give the next tests back what they had.
    with translation.override(translation.get_language()):
        text = _credit_text(chinese, harbour.short)
    assert "您的儲值餘額已用完。" in text
    assert "您正在使用緊急額度：300.00 TWD 中尚餘 38.11 TWD，以近期" in text  # noqa: RUF001
    assert "平日 09:00 至 16:00（Asia/Taipei 時間）" in text  # noqa: RUF001


def test_past_the_emergency_credit_it_says_when_the_supply_is_cut_and_what_restores_it(
    harbour: Harbour, client_for: ClientFor
) -> None:
    wallet_adjust(
        wallet=harbour.short.wallet,
        amount=-(35000 - 26189),  # -350.00: 50.00 beyond the emergency credit
        reason="more charges",
        idempotency_key="more",
        actor=SYSTEM,
        as_of=NOW,
    )
    client = client_for(harbour.world.group_manager)
    text = _credit_text(client, harbour.short)
    assert "The emergency credit of 300.00 TWD is used up too." in text
    assert (
        "The supply will be switched off at the next weekday between 09:00 and 16:00 "
        "(Asia/Taipei time) that is not a public holiday." in text
    )
    assert "A top-up of at least 50.00 TWD keeps it on." in text

    harbour.short.wallet.refresh_from_db()
    harbour.short.wallet.disconnected_at = NOW
    harbour.short.wallet.save(update_fields=["disconnected_at"])
    text = _credit_text(client, harbour.short)
    assert "The supply is switched off: the emergency credit is used up too." in text
    assert "A top-up of at least 50.00 TWD switches it back on straight away, at any hour." in text
    assert "Supply is disconnected until the balance is restored." not in text


def test_the_wallet_page_says_the_same(harbour: Harbour, client_for: ClientFor) -> None:
    client = client_for(harbour.world.group_manager)
    page = client.get(reverse("billing:account_wallet", args=[harbour.short.public_id]))
    text = " ".join(page.content.decode().split())
    assert "Your credit is used up." in text
    assert "You are using emergency credit: 38.11 TWD of 300.00 TWD left, about 1.3 days" in text
    assert "/topup/" in text
    fine = client.get(reverse("billing:account_wallet", args=[harbour.fine.public_id]))
    assert "used up" not in fine.content.decode()


def test_credit_with_days_left_keeps_its_days(harbour: Harbour) -> None:
    panel = credit_panel(harbour.fine, scopes_for(Role.VIEWER), NOW)
    assert panel is not None
    assert panel.context["used_up"] is None and str(panel.context["days_left"]) == "15.0"
