"""The admin shows money as money: "603.18 TWD", never the 60318 minor units the ledger stores,
in every list, detail and inline, and forms take amounts in major units.

One test per kind of admin page, on records with telling amounts, and a guard that fails when
an admin shows a whole-number field named like money (amount, balance, total...) raw.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django import forms
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.db import models
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from billing.models import (
    Bill,
    BillLine,
    DailyCharge,
    JournalEntry,
    ShortageWarning,
    TariffVersion,
    TopUp,
    Wallet,
)
from billing.services.ledger import wallet_update
from billing.services.topups import topup_create, topup_settle_paid
from meters.models import Supply
from portal.users.models import User
from tests.billing.helpers import supplied
from tests.factories import SYSTEM, make_account, make_user

pytestmark = pytest.mark.django_db

MONEY = "603.18 TWD"
RAW = "60318"
# Whole-number model fields named like this hold minor units of money: a money word first
# (total, tax_amount) or last (emergency_credit); rows_total counts rows.
MONEY_NAME = re.compile(
    r"^(amount|balance|total|subtotal|tax|net|credit|charge|price|cost|fee|refund|debit|paid)"
    r"(_|$)|_(amount|balance|credit|charge|price|cost|fee|refund|debit)$"
)


def _raw(html: str, raw: str = RAW) -> list[str]:
    """Where the page shows `raw` as a number of its own (not inside 603.18 or 1603180)."""
    return [
        html[max(m.start() - 60, 0) : m.end() + 20]
        for m in re.finditer(rf"(?<![\d.,]){raw}(?![\d.,])", html)
    ]


@pytest.fixture
def root() -> User:
    user = make_user("root@utility.example", staff=True)
    TOTP.activate(user, generate_totp_secret())
    return user


@pytest.fixture
def staff(root: User) -> Client:
    client = Client()
    client.force_login(root)
    return client


@pytest.fixture
def wallet() -> Wallet:
    """A prepaid wallet holding 603.18 TWD from one top-up, with 300 TWD emergency credit."""
    account, _sp, wallet = supplied()
    wallet_update(wallet=wallet, emergency_credit=300_00, actor=SYSTEM)
    now = timezone.now()
    topup, _new = topup_create(
        account=account, amount=603_18, idempotency_key="money", actor=SYSTEM, as_of=now
    )
    topup_settle_paid(
        topup_id=topup.pk,
        provider_ref="ref-money",
        amount=603_18,
        currency="TWD",
        actor=SYSTEM,
        as_of=now,
    )
    wallet.refresh_from_db()
    assert wallet.balance == 603_18
    return wallet


def test_the_wallet_list_and_form_show_money(staff: Client, wallet: Wallet) -> None:
    listed = staff.get(reverse("admin:billing_wallet_changelist")).content.decode()
    assert MONEY in listed and "300.00 TWD" in listed
    assert _raw(listed) == [] and _raw(listed, "30000") == []
    change = reverse("admin:billing_wallet_change", args=[wallet.pk])
    page = staff.get(change).content.decode()
    assert MONEY in page and 'value="300.00"' in page and _raw(page) == []
    # The emergency credit is typed in TWD, refused beyond cents, stored in minor units.
    refused = staff.post(change, {"emergency_credit": "250.005"})
    assert refused.status_code == 200
    assert staff.post(change, {"emergency_credit": "250.5"}).status_code == 302
    wallet.refresh_from_db()
    assert wallet.emergency_credit == 250_50


def test_the_top_up_list_detail_and_refund_form_show_money(staff: Client, wallet: Wallet) -> None:
    topup = TopUp.objects.get(wallet=wallet)
    for url in (
        reverse("admin:billing_topup_changelist"),
        reverse("admin:billing_topup_change", args=[topup.pk]),
        reverse("admin:billing_topup_refund", args=[topup.pk]),
    ):
        html = staff.get(url).content.decode()
        assert MONEY in html, url
        assert _raw(html) == [], url


def test_journal_entry_postings_show_money(staff: Client, wallet: Wallet) -> None:
    entry = JournalEntry.objects.get(kind="topup", account=wallet.account)
    html = staff.get(reverse("admin:billing_journalentry_change", args=[entry.pk])).content
    page = html.decode()
    assert MONEY in page and "-603.18 TWD" in page
    assert _raw(page) == []


def test_daily_charges_show_money(staff: Client, wallet: Wallet) -> None:
    sp = Supply.objects.get(account=wallet.account).service_point
    charge = DailyCharge.objects.create(
        account=wallet.account,
        service_point=sp,
        day=dt.date(2026, 3, 3),
        tariff_version=TariffVersion.objects.get(tariff__assignments__service_point=sp),
        consumption=7910,
        net=574_46,
        tax=28_72,
        total=603_18,
        created_at=timezone.now(),
    )
    for url in (
        reverse("admin:billing_dailycharge_changelist"),
        reverse("admin:billing_dailycharge_change", args=[charge.pk]),
    ):
        html = staff.get(url).content.decode()
        assert MONEY in html and "574.46 TWD" in html and "28.72 TWD" in html, url
        assert _raw(html) == [] and _raw(html, "57446") == [], url


def test_a_bill_and_its_lines_show_money(staff: Client) -> None:
    account = make_account("Shop", payment_mode="postpaid")
    bill = Bill.objects.create(
        account=account,
        period_start=dt.date(2026, 3, 1),
        period_end=dt.date(2026, 4, 1),
        currency="TWD",
        subtotal=574_46,
        tax=28_72,
        total=603_18,
        created_at=timezone.now(),
    )
    BillLine.objects.create(
        bill=bill,
        position=1,
        kind=BillLine.Kind.CONSUMPTION,
        label="Electricity",
        quantity=Decimal("234.067"),
        unit="kWh",
        unit_price=Decimal("2.454220"),
        amount=574_46,
    )
    for url in (
        reverse("admin:billing_bill_changelist"),
        reverse("admin:billing_bill_change", args=[bill.pk]),
    ):
        html = staff.get(url).content.decode()
        assert MONEY in html, url
        assert _raw(html) == [] and _raw(html, "57446") == [], url
    page = staff.get(reverse("admin:billing_bill_change", args=[bill.pk])).content.decode()
    assert "574.46 TWD" in page and "28.72 TWD" in page


def test_shortage_warnings_show_the_balance_as_money(staff: Client, wallet: Wallet) -> None:
    warning = ShortageWarning.objects.create(
        account=wallet.account,
        threshold=0,
        crossing=1,
        balance=-261_89,
        days_left=Decimal("0.0"),
        created_at=timezone.now(),
    )
    for url in (
        reverse("admin:billing_shortagewarning_changelist"),
        reverse("admin:billing_shortagewarning_change", args=[warning.pk]),
    ):
        html = staff.get(url).content.decode()
        assert "-261.89 TWD" in html, url
        assert _raw(html, "-26189") == [] and _raw(html, "26189") == [], url


def _money_fields(model: type[models.Model]) -> set[str]:
    return {
        f.name
        for f in model._meta.concrete_fields
        if isinstance(f, models.IntegerField) and MONEY_NAME.search(f.name)
    }


def _whole_numbers(field: forms.Field | None) -> bool:
    # DecimalField is an IntegerField to Django; an amount in major units is a DecimalField.
    return isinstance(field, forms.IntegerField) and not isinstance(field, forms.DecimalField)


def _shown_raw(model_admin: Any, model: type[models.Model], request: Any) -> list[str]:
    """The money fields this admin (or inline) puts on a page as the stored number: listed,
    read-only, or in a form field that takes whole minor units."""
    money = _money_fields(model)
    if not money:
        return []
    shown: set[str] = set()
    if hasattr(model_admin, "get_list_display"):
        shown |= {n for n in model_admin.get_list_display(request) if isinstance(n, str)}
    fields = set(flatten_fieldsets([(None, {"fields": model_admin.get_fields(request)})]))
    editable = (
        fields - set(model_admin.get_readonly_fields(request))
        if model_admin.has_change_permission(request)
        else set()
    )
    shown |= fields - editable
    form = (
        model_admin.get_form(request)
        if hasattr(model_admin, "get_form")
        else model_admin.get_formset(request).form
    )
    shown |= {n for n in editable if _whole_numbers(form.base_fields.get(n))}
    return sorted(f"{model.__name__}.{name}" for name in shown & money)


def test_no_admin_shows_a_money_field_raw(root: User) -> None:
    request = RequestFactory().get("/admin/")
    request.user = root
    raw: list[str] = []
    checked = 0
    for model, model_admin in admin.site._registry.items():
        raw += [
            f"{type(model_admin).__name__}: {f}" for f in _shown_raw(model_admin, model, request)
        ]
        for inline in model_admin.get_inline_instances(request):
            raw += [
                f"{type(inline).__name__}: {f}" for f in _shown_raw(inline, inline.model, request)
            ]
        checked += 1
    assert checked >= 25
    assert raw == [], "show these with portal.adminsite.money_display"
