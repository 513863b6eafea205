"""An account with 5 days of credit left is low, and says so alike on the account home's credit
panel, the organisation's low-balance list and the accounts CSV filtered to low credit; one
with 20 days left is low nowhere. The home panel used to call only under 3 days low."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
import time_machine
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse

from billing.services.ledger import wallet_adjust
from portal.tenancy.models import Account
from tests.billing.helpers import charge_history, supplied
from tests.conftest import World
from tests.factories import SYSTEM

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 12, 4, 7, 15, tzinfo=dt.UTC)
TODAY = dt.date(2026, 12, 4)
DAILY = 10_00


def _prepaid(account: Account, *, days: int) -> None:
    account, sp, wallet = supplied(account)
    wallet_adjust(
        wallet=wallet,
        amount=days * DAILY,
        reason="opening",
        idempotency_key=f"open-{account.pk}",
        actor=SYSTEM,
        as_of=NOW - dt.timedelta(days=20),
    )
    charge_history(account, sp, daily=DAILY, today=TODAY, as_of=NOW, consumption=8000)


def _body(response: object) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()  # type: ignore[arg-type]


def test_five_days_left_is_low_on_the_home_panel_the_organisation_list_and_the_csv(
    world: World,
) -> None:
    low, fine = world.acc1, world.acc2
    _prepaid(low, days=5)
    _prepaid(fine, days=20)
    client = Client()
    client.force_login(world.group_manager)
    group = world.group.public_id
    with time_machine.travel(NOW, tick=False):
        homes = {
            account.number: client.get(reverse("tenancy:account_home", args=[account.public_id]))
            for account in (low, fine)
        }
        organisation = client.get(reverse("tenancy:organisation_home", args=[group]))
        exported = client.get(reverse("web:organisation_accounts_csv", args=[group]), {"low": "1"})

    def credit(response: object) -> dict[str, object]:
        (panel,) = [
            p
            for p in response.context["panels"]  # type: ignore[attr-defined]
            if p.template == "web/panels/credit.html"
        ]
        return dict(panel.context)

    on_home = {number: bool(credit(page)["low"]) for number, page in homes.items()}
    (listed,) = [
        p for p in organisation.context["panels"] if p.template.endswith("low_balance.html")
    ]
    in_list = {row.number for row in listed.context["rows"]}
    body = _body(exported)
    in_csv = {row["account_number"] for row in csv.DictReader(io.StringIO(body))}
    assert on_home == {low.number: True, fine.number: False}
    assert in_list == in_csv == {low.number}
