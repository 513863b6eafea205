"""Figures are written by one rule in every language: digits grouped by three with a comma, a
point before the decimals, and the same decimals for a quantity whatever the language
(portal/formats; money through portal.lib.money.format_money and the `figures` filters).

Django's zh_Hant formats group by four without a separator: 1192.8 in Chinese was 1,192.8
in English. The browser page walk checks every page the same way (tests/browser/test_pages.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.conf import settings
from django.template import engines
from django.test import Client
from django.urls import reverse
from django.utils import translation

from billing.services.ledger import wallet_create
from billing.services.topups import topup_create, topup_settle_paid
from portal.audit.events import AuditEvent, event_display
from portal.lib.money import format_amount, format_money
from portal.tenancy.models import Account
from portal.users.models import User
from tests.conftest import World
from tests.factories import SYSTEM

LANGUAGES = ("en", "zh-hant")


def _render(source: str, **context: object) -> str:
    return engines["django"].from_string(source).render(context)


@pytest.mark.parametrize("language", LANGUAGES)
def test_django_writes_numbers_alike_in_both_languages(language: str) -> None:
    source = (
        '{{ a|floatformat:"1g" }}|{{ b|floatformat:"3g" }}|{{ c|floatformat:"g" }}|'
        '{{ d|floatformat:"2g" }}'
    )
    values = {"a": 1192.8, "b": Decimal("1234567.891"), "c": 35040, "d": Decimal("-261.894")}
    with translation.override(language):
        assert _render(source, **values) == "1,192.8|1,234,567.891|35,040|-261.89"


def test_money_is_grouped_with_the_currencys_decimals() -> None:
    assert format_money(119280, "TWD") == "1,192.80 TWD"
    assert format_money(-26189, "TWD") == "-261.89 TWD"
    assert format_money(1234567, "JPY") == "1,234,567 JPY"
    assert format_amount(Decimal("1192.8"), "TWD") == "1,192.80"
    with translation.override("zh-hant"):
        rendered = _render(
            "{% load figures %}{{ v|money:'TWD' }}|{{ v|amount:'JPY' }}|{{ n|money:'TWD' }}",
            v=Decimal("1192.8"),
            n=None,
        )
    assert rendered == "1,192.80 TWD|1,193|"


def test_stored_amounts_read_grouped_in_the_audit_log() -> None:
    """Audit data keeps amounts exactly as stored ("1192.80 TWD"); the sentence groups them."""
    with translation.override("en"):
        shown = event_display(
            AuditEvent.TOPUP_SUCCEEDED, {"amount": "1192.80 TWD", "account": "HR-0201"}
        )
    assert "1,192.80 TWD" in shown
    assert "1192.80" not in shown


def _wallet_of(account: Account, amount: int) -> None:
    wallet_create(account=account, actor=SYSTEM)
    now = dt.datetime(2026, 12, 3, 5, 25, tzinfo=dt.UTC)
    topup, _new = topup_create(
        account=account, amount=amount, idempotency_key="f", actor=SYSTEM, as_of=now
    )
    topup_settle_paid(
        topup_id=topup.pk,
        provider_ref="ref-f",
        amount=amount,
        currency="TWD",
        actor=SYSTEM,
        as_of=now,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("language", LANGUAGES)
def test_pages_write_a_balance_the_same_way_in_both_languages(
    world: World, client_for: Callable[[User], Client], language: str
) -> None:
    _wallet_of(world.acc1, 1192_80)
    pages = {
        world.group_manager: [
            reverse("billing:account_wallet", args=[world.acc1.public_id]),
            reverse("billing:topup", args=[world.acc1.public_id]),
            reverse("tenancy:account_home", args=[world.acc1.public_id]),
            reverse("web:organisation_accounts", args=[world.group.public_id]),
        ],
    }
    for user, urls in pages.items():
        client = client_for(user)
        client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
        for url in urls:
            html = client.get(url).content.decode()
            assert "1,192.80" in html, url
            assert "1192.8" not in html, url
