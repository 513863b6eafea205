"""Residents' bills (with PDFs) and wallet ledger pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import translation

from billing.models import Bill, TopUp
from billing.payments.providers import provider_get
from billing.payments.sandbox import SandboxProvider
from billing.pdf import bill_context
from billing.services.bills import bill_run_execute, bill_void
from billing.services.ledger import wallet_adjust
from billing.services.topups import topup_checkout_start, topup_create, webhook_receive
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.lib.money import from_minor
from portal.notifications.models import NotificationPreference
from portal.tenancy.models import Account
from portal.tenancy.roles import Role
from tests.billing.helpers import supplied
from tests.billing.test_bills import MARCH, local_hours, postpaid
from tests.factories import SYSTEM, make_account, make_membership, make_organisation, make_user

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 5, 4, 2, 0, tzinfo=dt.UTC)
BILLED = dt.datetime(2026, 4, 2, 3, 0, tzinfo=dt.UTC)


def _money_of(currency: str) -> Callable[[int], str]:
    # As the PDF writes amounts: the currency's decimals, thousands separated.
    return lambda minor: f"{from_minor(minor, currency):,}"


def _client(account: object, role: Role = Role.VIEWER) -> Client:
    user = make_user()
    make_membership(user, role, account=account)  # type: ignore[arg-type]
    client = Client()
    client.force_login(user)
    return client


def test_the_wallet_page_lists_movements_with_the_running_balance() -> None:
    account, _, wallet = supplied()
    for key, amount in [("a", 500_00), ("b", -120_50), ("c", 30_00)]:
        wallet_adjust(
            wallet=wallet,
            amount=amount,
            reason=f"move {key}",
            idempotency_key=key,
            actor=SYSTEM,
            as_of=NOW,
        )
    response = _client(account).get(f"/a/{account.public_id}/wallet/")
    assert response.status_code == 200
    rows = response.context["lines"]
    assert [(r["line"].memo, r["amount"], r["balance"]) for r in rows] == [
        ("move c", "30.00 TWD", "409.50 TWD"),
        ("move b", "-120.50 TWD", "379.50 TWD"),
        ("move a", "500.00 TWD", "500.00 TWD"),
    ]


def test_bills_are_listed_and_their_pdf_is_served_only_to_the_account() -> None:
    account = make_account(payment_mode="postpaid")
    bill = Bill.objects.create(
        account=account,
        number="RES-2026-000007",
        sequence_number=7,
        payment_reference="RES2026000007X",
        period_start=dt.date(2026, 4, 1),
        period_end=dt.date(2026, 5, 1),
        currency="TWD",
        status=Bill.Status.ISSUED,
        subtotal=1000_00,
        tax=50_00,
        total=1050_00,
        created_at=NOW,
        issued_at=NOW,
    )
    Bill.objects.create(
        account=account,
        period_start=dt.date(2026, 5, 1),
        period_end=dt.date(2026, 6, 1),
        currency="TWD",
        created_at=NOW,
    )  # a draft: staff's, not shown
    client = _client(account)
    page = client.get(f"/a/{account.public_id}/bills/")
    assert [row["bill"].number for row in page.context["bills"]] == ["RES-2026-000007"]
    assert "1,050.00 TWD" in page.content.decode()
    pdf = client.get(f"/a/{account.public_id}/bills/{bill.public_id}/pdf/?lang=zh-hant")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    stranger = _client(make_account(payment_mode="postpaid"))
    response = stranger.get(f"/a/{account.public_id}/bills/{bill.public_id}/pdf/")
    assert response.status_code == 404


# --- Bill detail ------------------------------------------------------------------------------


def _billed_and_voided() -> tuple[Account, Bill, Bill]:
    account, sp = postpaid(organisation=make_organisation())
    local_hours(account, sp, MARCH, 31)
    bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=BILLED)
    bill = Bill.objects.get(account=account)
    note = bill_void(bill=bill, reason="meter misread", actor=SYSTEM, as_of=BILLED)
    bill.refresh_from_db()
    return account, bill, note


def test_a_bills_detail_shows_its_lines_and_the_stored_totals_as_the_pdf_does() -> None:
    account, bill, note = _billed_and_voided()
    client = _client(account)
    listing = client.get(reverse("billing:account_bills", args=[account.public_id]))
    detail_url = reverse("billing:account_bill", args=[account.public_id, bill.public_id])
    note_url = reverse("billing:account_bill", args=[account.public_id, note.public_id])
    html = listing.content.decode()
    assert detail_url in html and note_url in html
    assert f"credit note for bill {bill.number}" in html

    page = client.get(detail_url)
    assert page.status_code == 200
    money = _money_of(bill.currency)
    assert (page.context["subtotal"], page.context["tax"], page.context["total"]) == (
        money(bill.subtotal),
        money(bill.tax),
        money(bill.total),
    )
    # The very context the PDF is rendered from: same sections, lines and figures.
    with translation.override("en"):  # the page's language, whatever a test left active
        pdf_context = bill_context(bill=bill)
    for name in ("sections", "other_rows", "tax_rows", "summary", "history_rows"):
        assert page.context[name] == pdf_context[name]
    shown = [row.amount for section in page.context["sections"] for row in section.rows]
    shown += [tax.amount for tax in page.context["tax_rows"]]
    assert shown == [money(line.amount) for line in bill.lines.order_by("position")]
    html = page.content.decode()
    assert f'id="bill-total">{money(bill.total)}<' in html
    assert "This bill is void: meter misread" in html and note_url in html
    pdf = reverse("billing:account_bill_pdf", args=[account.public_id, bill.public_id])
    assert f"{pdf}?lang=en" in html and f"{pdf}?lang=zh-hant" in html
    assert reverse("billing:account_bills", args=[account.public_id]) in html

    credit = client.get(note_url)
    assert credit.context["credit_note_for"] == bill
    assert f'id="bill-total">{money(note.total)}<' in credit.content.decode()
    assert detail_url in credit.content.decode()  # "Credits bill N" links back


def test_another_accounts_bill_is_not_found_whatever_the_method() -> None:
    account, bill, _note = _billed_and_voided()
    stranger = _client(make_account(payment_mode="postpaid"), Role.OWNER)
    own = make_account(payment_mode="postpaid")
    owner = _client(own, Role.OWNER)
    for client, tenant in ((stranger, account), (owner, own)):
        url = reverse("billing:account_bill", args=[tenant.public_id, bill.public_id])
        assert client.get(url).status_code == 404
        assert client.post(url).status_code == 404
    mine = reverse("billing:account_bill", args=[account.public_id, bill.public_id])
    assert _client(account).post(mine).status_code == 405


# --- Notification preferences -----------------------------------------------------------------


def _prefs(account: Account) -> str:
    return reverse("billing:account_notifications", args=[account.public_id])


def _form(**overrides: str) -> dict[str, str]:
    data = {"email_shortage": "on", "email_bill_issued": "on", "email_bill_overdue": "on"}
    # The meter alarms' boxes as the page shows them to a non-viewer: email on.
    data.update({"email_leak": "on", "email_tamper": "on", "email_comms_loss": "on"})
    data.update({"email_valve": "on"})
    data.update({"quiet": "default", "phone": "", "quiet_start": "", "quiet_end": ""})
    data.update(overrides)
    return {key: value for key, value in data.items() if value != "off"}


def _saved() -> int:
    return AuditLogEntry.objects.filter(event_type=AuditEvent.NOTIFICATION_PREFERENCE_SAVED).count()


def test_preferences_round_trip_and_each_change_is_audited_once() -> None:
    account = make_account()
    user = make_user()
    make_membership(user, Role.PAYER, account=account)
    client = Client()
    client.force_login(user)
    page = client.get(_prefs(account))
    assert page.status_code == 200
    form = page.context["form"]
    assert form["email_shortage"].value() is True and form["sms_shortage"].value() is False
    assert form["quiet"].value() == "default"
    assert "you are not sent" not in page.content.decode()

    data = _form(
        sms_shortage="on",
        email_bill_overdue="off",
        phone="+886 912-345-678",
        quiet="custom",
        quiet_start="22:30",
        quiet_end="07:00",
    )
    response = client.post(_prefs(account), data)
    assert response.status_code == 302 and response["Location"] == _prefs(account)
    stored = {p.topic: p for p in NotificationPreference.objects.filter(user=user)}
    assert {t: (p.email, p.sms) for t, p in stored.items()} == {
        "shortage": (True, True),
        "bill_issued": (True, False),
        "bill_overdue": (False, False),
        # The quiet hours are kept on every topic, the meter alarms' too.
        "leak": (True, False),
        "tamper": (True, False),
        "comms_loss": (True, False),
        "valve": (True, False),
    }
    assert {(p.phone, p.quiet_start, p.quiet_end) for p in stored.values()} == {
        ("+886912345678", dt.time(22, 30), dt.time(7, 0))
    }
    assert _saved() == 7

    again = client.get(_prefs(account))
    form = again.context["form"]
    assert form["sms_shortage"].value() is True and form["email_bill_overdue"].value() is False
    assert form["phone"].value() == "+886912345678" and form["quiet"].value() == "custom"
    assert 'value="22:30"' in again.content.decode()
    # The same choices again change nothing and record nothing.
    client.post(_prefs(account), {**data, "phone": "+886912345678"})
    assert _saved() == 7
    # One topic changed: one entry.
    client.post(_prefs(account), {**data, "sms_bill_issued": "on"})
    assert _saved() == 8


def test_no_quiet_hours_is_stored_as_equal_ends_and_read_back() -> None:
    account = make_account()
    client = _client(account, Role.OWNER)
    assert client.post(_prefs(account), _form(quiet="none")).status_code == 302
    assert {(p.quiet_start, p.quiet_end) for p in NotificationPreference.objects.all()} == {
        (dt.time(0), dt.time(0))
    }
    assert client.get(_prefs(account)).context["form"]["quiet"].value() == "none"


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (_form(sms_shortage="on"), "phone", "Text messages need a mobile number."),
        (_form(phone="0912345678"), "phone", "in international form"),
        (
            _form(quiet="custom", quiet_start="22:00", quiet_end="22:00"),
            "quiet_end",
            "cannot start and end at the same time",
        ),
        (_form(quiet="custom", quiet_end="07:00"), "quiet_start", "Give the time the quiet"),
        (_form(quiet="custom", quiet_start="25:00", quiet_end="07:00"), "quiet_start", "valid"),
        (_form(quiet="sometimes"), "quiet", "Select a valid choice"),
    ],
)
def test_bad_preferences_are_refused_with_a_clear_message_and_nothing_saved(
    data: dict[str, str], field: str, message: str
) -> None:
    account = make_account()
    client = _client(account)
    response = client.post(_prefs(account), data)
    assert response.status_code == 400
    errors = " ".join(response.context["form"].errors[field])
    assert message in errors
    assert message in response.content.decode().replace("&quot;", '"')
    assert 'class="form-control is-invalid"' in response.content.decode() or field == "quiet"
    assert not NotificationPreference.objects.exists()
    assert _saved() == 0


def test_a_viewer_manages_their_own_choices_and_is_told_they_get_no_notices() -> None:
    account = make_account()
    client = _client(account)  # a viewer
    page = client.get(_prefs(account))
    assert page.status_code == 200 and page.context["told_here"] is False
    assert "you are not sent its low-credit warnings" in page.content.decode()
    assert client.post(_prefs(account), _form(email_shortage="off")).status_code == 302


# --- Top-up form and receipt ------------------------------------------------------------------


def _payer(account: Account) -> Client:
    return _client(account, Role.PAYER)


def test_a_preset_amount_tops_up_and_a_typed_amount_wins() -> None:
    account, _sp, _wallet = supplied()
    client = _payer(account)
    page = reverse("billing:topup", args=[account.public_id])
    form = client.get(page)
    html = form.content.decode()
    assert 'value="500"' in html and "500.00 TWD" in html and 'value="other"' in html
    assert ">Top up</button>" in html and '<label class="form-label" for="id_amount">Amount' in html
    assert client.post(page, {"preset": "500", "idempotency_key": "p1"}).status_code == 302
    assert client.post(page, {"preset": "500", "amount": "42", "idempotency_key": "p2"})
    assert sorted(TopUp.objects.values_list("amount", flat=True)) == [42_00, 500_00]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "Choose an amount or type one."),
        ({"preset": "other"}, "Type the amount to top up."),
        ({"amount": "0.50"}, "A top-up is at least 1 TWD."),
        ({"amount": "100000.01"}, "A single top-up is at most 100000 TWD."),
        ({"amount": "0"}, "Enter an amount above zero."),
        ({"amount": "1.005"}, "Ensure that there are no more than 2 decimal places."),
        ({"preset": "777"}, "Select a valid choice."),
    ],
)
def test_the_topup_form_says_what_is_wrong(data: dict[str, str], message: str) -> None:
    account, _sp, _wallet = supplied()
    response = _payer(account).post(
        reverse("billing:topup", args=[account.public_id]), {**data, "idempotency_key": "k"}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not TopUp.objects.exists()


def test_the_receipt_polls_while_pending_and_shows_the_new_balance_once_paid() -> None:
    account, _sp, wallet = supplied()
    client = _payer(account)
    topup, _new = topup_create(
        account=account, amount=300_00, idempotency_key="r", actor=SYSTEM, as_of=NOW
    )
    topup, _url = topup_checkout_start(topup=topup, actor=SYSTEM, as_of=NOW)
    receipt = reverse("billing:topup_receipt", args=[account.public_id, topup.public_id])
    with time_machine.travel(NOW + dt.timedelta(seconds=30), tick=False):
        pending = client.get(receipt).content.decode()
        fragment = client.get(receipt, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' in pending and 'id="new-balance"' not in pending
    assert "Waiting for payment" in pending
    # Still open after five minutes: the page stops asking and says what to do.
    with time_machine.travel(NOW + dt.timedelta(minutes=6), tick=False):
        late = client.get(receipt, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in late and "Ask again with the button below" in late
    assert fragment.lstrip().startswith('<div id="topup-status"') and "<html" not in fragment

    provider = provider_get("sandbox")
    assert isinstance(provider, SandboxProvider)
    body, headers = provider.checkout_complete(reference=topup.public_id, paid=True, as_of=NOW)
    webhook_receive(provider=provider, body=body, headers=headers, as_of=NOW)
    with time_machine.travel(NOW + dt.timedelta(minutes=7), tick=False):
        done = client.get(receipt, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in done and "Paid" in done
    assert '<strong id="new-balance">300.00 TWD</strong>' in done
    assert reverse("billing:account_wallet", args=[account.public_id]) in done
    assert wallet.pk


def test_a_failed_payment_says_so_and_stops_polling() -> None:
    account, _sp, _wallet = supplied()
    client = _payer(account)
    topup, _new = topup_create(
        account=account, amount=300_00, idempotency_key="f", actor=SYSTEM, as_of=NOW
    )
    topup, _url = topup_checkout_start(topup=topup, actor=SYSTEM, as_of=NOW)
    provider = provider_get("sandbox")
    assert isinstance(provider, SandboxProvider)
    body, headers = provider.checkout_complete(reference=topup.public_id, paid=False, as_of=NOW)
    webhook_receive(provider=provider, body=body, headers=headers, as_of=NOW)
    html = client.get(
        reverse("billing:topup_receipt", args=[account.public_id, topup.public_id])
    ).content.decode()
    assert "The payment did not go through." in html
    assert "hx-trigger" not in html and 'id="new-balance"' not in html
