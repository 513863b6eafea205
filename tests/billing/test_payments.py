"""Top-ups end to end: creation, checkout, webhooks, reconciliation, refunds, pages and API."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.models import JournalEntry, TopUp, Wallet, WebhookEvent, WebhookRejection
from billing.payments.base import PaymentState, ProviderPayment, ProviderUnavailable
from billing.payments.providers import provider_get
from billing.payments.sandbox import SIGNATURE_HEADER, SandboxProvider, webhook_post
from billing.services.ledger import wallet_create
from billing.services.topups import (
    IdempotencyKeyReused,
    TopUpError,
    topup_checkout_start,
    topup_create,
    topup_refund,
    topups_reconcile,
    webhook_receive,
)
from billing.services.verify import ledger_verify
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.tenancy.models import Account
from portal.tenancy.roles import Role
from portal.users.models import User
from tests.conftest import World
from tests.factories import SYSTEM, make_account, make_membership, make_user

pytestmark = pytest.mark.django_db


def _sandbox() -> SandboxProvider:
    provider = provider_get("sandbox")
    assert isinstance(provider, SandboxProvider)
    return provider


def _wallet(account: Account | None = None) -> Wallet:
    return wallet_create(account=account or make_account(), actor=SYSTEM)


def _pending(wallet: Wallet, amount: int = 50_000, key: str = "k1") -> TopUp:
    topup, _new = topup_create(
        account=wallet.account,
        amount=amount,
        idempotency_key=key,
        actor=SYSTEM,
        as_of=timezone.now(),
    )
    topup, _url = topup_checkout_start(topup=topup, actor=SYSTEM, as_of=timezone.now())
    return topup


def _pay(topup: TopUp, *, paid: bool = True) -> tuple[bytes, dict[str, str]]:
    return _sandbox().checkout_complete(reference=topup.public_id, paid=paid, as_of=timezone.now())


def _deliver(body: bytes, headers: dict[str, str], as_of: dt.datetime | None = None) -> Any:
    return webhook_receive(
        provider=_sandbox(), body=body, headers=headers, as_of=as_of or timezone.now()
    )


def _balance(wallet: Wallet) -> int:
    return Wallet.objects.get(pk=wallet.pk).balance


# --- Creating and starting --------------------------------------------------------------------


def test_a_topup_is_created_once_per_idempotency_key() -> None:
    wallet = _wallet()
    now = timezone.now()
    first, new = topup_create(
        account=wallet.account, amount=500, idempotency_key="same", actor=SYSTEM, as_of=now
    )
    again, new_again = topup_create(
        account=wallet.account, amount=500, idempotency_key="same", actor=SYSTEM, as_of=now
    )
    assert new and not new_again and again.pk == first.pk
    assert TopUp.objects.filter(account=wallet.account).count() == 1
    with pytest.raises(IdempotencyKeyReused):
        topup_create(
            account=wallet.account, amount=700, idempotency_key="same", actor=SYSTEM, as_of=now
        )


@pytest.mark.parametrize("amount", [0, -5, 100_000 * 100 + 1])
def test_it_refuses_amounts_out_of_range(amount: int) -> None:
    wallet = _wallet()
    with pytest.raises(TopUpError):
        topup_create(
            account=wallet.account,
            amount=amount,
            idempotency_key="k",
            actor=SYSTEM,
            as_of=timezone.now(),
        )
    assert not TopUp.objects.exists()


def test_a_postpaid_account_cannot_top_up() -> None:
    account = make_account(payment_mode="postpaid")
    with pytest.raises(TopUpError, match="no prepaid wallet"):
        topup_create(
            account=account, amount=5, idempotency_key="k", actor=SYSTEM, as_of=timezone.now()
        )


def test_checkout_start_makes_the_topup_pending_and_returns_the_sandbox_page() -> None:
    wallet = _wallet()
    topup, _new = topup_create(
        account=wallet.account, amount=500, idempotency_key="k", actor=SYSTEM, as_of=timezone.now()
    )
    topup, url = topup_checkout_start(topup=topup, actor=SYSTEM, as_of=timezone.now())
    assert topup.status == TopUp.Status.PENDING and topup.provider_ref.startswith("sbx_")
    assert url == reverse(
        "billing:sandbox_checkout",
        kwargs={"account_id": wallet.account.public_id, "topup_id": topup.public_id},
    )
    # A double submit gets the same page back and starts nothing new.
    again, url_again = topup_checkout_start(topup=topup, actor=SYSTEM, as_of=timezone.now())
    assert url_again == url and again.provider_ref == topup.provider_ref


# --- Webhooks ---------------------------------------------------------------------------------


def test_a_paid_webhook_credits_once_however_often_it_is_delivered() -> None:
    wallet = _wallet()
    topup = _pending(wallet)
    body, headers = _pay(topup)
    outcomes = [_deliver(body, headers).result for _ in range(3)]
    assert outcomes == ["credited", "duplicate", "duplicate"]
    topup.refresh_from_db()
    assert topup.status == TopUp.Status.SUCCEEDED and topup.entry is not None
    assert _balance(wallet) == 50_000
    event = WebhookEvent.objects.get()
    assert event.deliveries == 3 and event.verified and event.processed_at is not None
    assert json.loads(event.body)["data"]["reference"] == str(topup.public_id)
    assert AuditLogEntry.objects.filter(event_type=AuditEvent.TOPUP_SUCCEEDED).count() == 1
    entry = JournalEntry.objects.get(kind="topup")
    codes = {p.ledger_account.code: p.amount for p in entry.postings.all()}
    assert codes == {f"wallet:{wallet.account_id}:TWD": -50_000, "clearing:sandbox:TWD": 50_000}
    assert ledger_verify().ok


def test_a_redelivery_signed_anew_is_still_a_duplicate() -> None:
    wallet = _wallet()
    topup = _pending(wallet)
    body, headers = _pay(topup)
    _deliver(body, headers)
    later = timezone.now() + dt.timedelta(hours=3)
    resigned = _sandbox().signed_headers(body=body, as_of=later)
    assert _deliver(body, resigned, as_of=later).result == "duplicate"
    assert _balance(wallet) == 50_000


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda h: {}, "missing signature"),
        (lambda h: {SIGNATURE_HEADER: "garbage"}, "malformed signature"),
        (lambda h: {SIGNATURE_HEADER: h[SIGNATURE_HEADER][:-2] + "00"}, "bad signature"),
    ],
)
def test_unsigned_or_forged_webhooks_are_refused_and_only_counted(
    mangle: Callable[[dict[str, str]], dict[str, str]], reason: str
) -> None:
    # Issue 12, finding 2: refused bodies were stored, so anyone could grow the table.
    wallet = _wallet()
    topup = _pending(wallet)
    body, headers = _pay(topup)
    for _ in range(3):
        outcome = _deliver(body, mangle(headers))
        assert (outcome.status, outcome.result) == (400, f"rejected: {reason}")
    assert not WebhookEvent.objects.exists()
    rejection = WebhookRejection.objects.get()
    assert (rejection.provider, rejection.reason, rejection.count) == (
        "sandbox",
        f"rejected: {reason}",
        3,
    )
    assert rejection.last_size == len(body)
    assert _balance(wallet) == 0
    # The genuine delivery of the same event id still goes through.
    assert _deliver(body, headers).result == "credited"
    event = WebhookEvent.objects.get()
    assert event.verified and event.deliveries == 1 and event.error == ""
    assert _balance(wallet) == 50_000


def test_a_stale_signature_is_refused() -> None:
    wallet = _wallet()
    body, headers = _pay(_pending(wallet))
    outcome = _deliver(body, headers, as_of=timezone.now() + dt.timedelta(minutes=6))
    assert (outcome.status, outcome.result) == (400, "rejected: stale signature")
    assert _balance(wallet) == 0


def test_a_body_that_is_not_an_event_is_counted_not_stored() -> None:
    outcome = _deliver(b"\xff not json", {SIGNATURE_HEADER: "t=1,v1=00"})
    assert outcome.status == 400
    assert not WebhookEvent.objects.exists()
    assert WebhookRejection.objects.get().count == 1


def test_the_webhook_endpoint_is_throttled_per_address(settings: Any) -> None:
    settings.PAYMENT_WEBHOOK_RATE_PER_MINUTE = 5
    url = reverse("billing:payment_webhook", kwargs={"provider": "sandbox"})
    client = Client(REMOTE_ADDR="203.0.113.9")
    statuses = [
        client.post(url, b"{}", content_type="application/json").status_code for _ in range(8)
    ]
    assert statuses == [400] * 5 + [429] * 3
    throttled = client.post(url, b"{}", content_type="application/json")
    assert throttled["Retry-After"] == "60"
    # Another sender is not held back, and only the refusals let through were counted.
    other = Client(REMOTE_ADDR="203.0.113.10")
    assert other.post(url, b"{}", content_type="application/json").status_code == 400
    assert WebhookRejection.objects.get().count == 6


def test_a_declined_payment_fails_the_topup_and_a_late_success_still_credits() -> None:
    wallet = _wallet()
    topup = _pending(wallet)
    assert _deliver(*_pay(topup, paid=False)).result == "failed"
    topup.refresh_from_db()
    assert topup.status == TopUp.Status.FAILED and _balance(wallet) == 0
    # The provider's word that money was taken wins over an earlier decline.
    body = json.dumps(
        {
            "id": "evt_late_paid",
            "type": "payment.succeeded",
            "data": {
                "payment": topup.provider_ref,
                "reference": str(topup.public_id),
                "amount": topup.amount,
                "currency": "TWD",
            },
        }
    ).encode()
    assert _deliver(body, _sandbox().signed_headers(body=body, as_of=timezone.now())).result == (
        "credited"
    )
    assert _balance(wallet) == 50_000
    # And a "failed" after a success changes nothing.
    assert _deliver(*_pay(topup, paid=False)).result in {"duplicate", "already settled"}
    assert _balance(wallet) == 50_000


def test_a_payment_of_another_amount_is_not_credited() -> None:
    wallet = _wallet()
    topup = _pending(wallet)
    body = json.dumps(
        {
            "id": "evt_wrong_amount",
            "type": "payment.succeeded",
            "data": {
                "payment": topup.provider_ref,
                "reference": str(topup.public_id),
                "amount": 1,
                "currency": "TWD",
            },
        }
    ).encode()
    outcome = _deliver(body, _sandbox().signed_headers(body=body, as_of=timezone.now()))
    assert outcome.status == 200 and outcome.result.startswith("error:")
    assert WebhookEvent.objects.get().processed_at is None
    assert _balance(wallet) == 0


def test_a_credit_reconnects_a_disconnected_supply() -> None:
    wallet = _wallet()
    Wallet.objects.filter(pk=wallet.pk).update(disconnected_at=timezone.now())
    _deliver(*_pay(_pending(wallet)))
    assert Wallet.objects.get(pk=wallet.pk).disconnected_at is None
    assert AuditLogEntry.objects.filter(event_type=AuditEvent.SUPPLY_RECONNECT_QUEUED).exists()


# --- Timeouts and reconciliation ----------------------------------------------------------


def test_a_timed_out_checkout_is_unknown_until_reconciliation_settles_it() -> None:
    wallet = _wallet()
    topup, _new = topup_create(
        account=wallet.account, amount=1408, idempotency_key="t", actor=SYSTEM, as_of=timezone.now()
    )
    topup, url = topup_checkout_start(topup=topup, actor=SYSTEM, as_of=timezone.now())
    assert topup.status == TopUp.Status.UNKNOWN and url is None
    report = topups_reconcile(actor=SYSTEM, as_of=timezone.now())
    topup.refresh_from_db()
    assert (report.checked, report.open) == (1, 1)
    assert topup.status == TopUp.Status.PENDING and topup.provider_ref
    # Paid at the provider, but the webhook is lost: reconciliation credits it later.
    _pay(topup)
    assert topups_reconcile(actor=SYSTEM, as_of=timezone.now()).checked == 0  # not stale yet
    report = topups_reconcile(actor=SYSTEM, as_of=timezone.now() + dt.timedelta(minutes=11))
    assert report.credited == 1
    assert _balance(wallet) == 1408
    # The webhook arriving after all credits nothing more.
    assert _deliver(
        *_sandbox().webhook_for(reference=topup.public_id, as_of=timezone.now())
    ).result == ("already credited")
    assert _balance(wallet) == 1408


def test_reconciliation_fails_topups_the_provider_never_saw_after_a_day() -> None:
    wallet = _wallet()
    created = timezone.now() - dt.timedelta(hours=2)
    topup, _new = topup_create(
        account=wallet.account, amount=500, idempotency_key="t", actor=SYSTEM, as_of=created
    )

    class Silent(SandboxProvider):
        def payment_status(self, **kwargs: Any) -> ProviderPayment:
            return ProviderPayment(state=PaymentState.NOT_FOUND)

    silent = Silent(secret="x")
    report = topups_reconcile(actor=SYSTEM, as_of=timezone.now(), provider_for=lambda name: silent)
    assert (report.checked, report.open, report.failed) == (1, 1, 0)
    report = topups_reconcile(
        actor=SYSTEM, as_of=created + dt.timedelta(hours=25), provider_for=lambda name: silent
    )
    assert report.failed == 1
    topup.refresh_from_db()
    assert topup.status == TopUp.Status.FAILED


# --- Refunds ------------------------------------------------------------------------------


def test_refunds_are_partial_or_whole_never_more_than_paid_or_held() -> None:
    wallet = _wallet()
    topup = _pending(wallet, amount=10_000)
    _deliver(*_pay(topup))
    now = timezone.now()
    with pytest.raises(TopUpError, match="reason"):
        topup_refund(
            topup=topup, amount=100, reason=" ", idempotency_key="r0", actor=SYSTEM, as_of=now
        )
    topup_refund(
        topup=topup, amount=4_000, reason="moved out", idempotency_key="r1", actor=SYSTEM, as_of=now
    )
    # The same key again refunds nothing more.
    topup_refund(
        topup=topup, amount=4_000, reason="moved out", idempotency_key="r1", actor=SYSTEM, as_of=now
    )
    assert _balance(wallet) == 6_000
    with pytest.raises(TopUpError, match="left to refund"):
        topup_refund(
            topup=topup, amount=6_001, reason="x", idempotency_key="r2", actor=SYSTEM, as_of=now
        )
    topup_refund(
        topup=topup, amount=6_000, reason="closing", idempotency_key="r3", actor=SYSTEM, as_of=now
    )
    topup.refresh_from_db()
    assert topup.status == TopUp.Status.REFUNDED and _balance(wallet) == 0
    with pytest.raises(TopUpError, match="in full"):
        topup_refund(
            topup=topup, amount=1, reason="x", idempotency_key="r4", actor=SYSTEM, as_of=now
        )
    assert AuditLogEntry.objects.filter(event_type=AuditEvent.TOPUP_REFUNDED).count() == 2
    assert ledger_verify().ok


def test_credit_already_spent_is_not_refunded() -> None:
    wallet = _wallet()
    topup = _pending(wallet, amount=10_000)
    _deliver(*_pay(topup))
    from billing.services.ledger import wallet_adjust

    wallet_adjust(
        wallet=wallet,
        amount=-7_000,
        reason="usage",
        idempotency_key="u",
        actor=SYSTEM,
        as_of=timezone.now(),
    )
    with pytest.raises(TopUpError, match="already used"):
        topup_refund(
            topup=topup,
            amount=3_001,
            reason="x",
            idempotency_key="r",
            actor=SYSTEM,
            as_of=timezone.now(),
        )


def test_an_unpaid_topup_cannot_be_refunded() -> None:
    topup = _pending(_wallet())
    with pytest.raises(TopUpError, match="paid"):
        topup_refund(
            topup=topup,
            amount=1,
            reason="x",
            idempotency_key="r",
            actor=SYSTEM,
            as_of=timezone.now(),
        )


# --- The HTTP endpoint ----------------------------------------------------------------------


def test_the_webhook_endpoint_is_public_csrf_exempt_and_checks_signatures() -> None:
    wallet = _wallet()
    topup = _pending(wallet)
    body, headers = _pay(topup)
    client = Client(enforce_csrf_checks=True)
    url = reverse("billing:payment_webhook", kwargs={"provider": "sandbox"})
    signature = headers[SIGNATURE_HEADER]
    bad = client.post(url, body, content_type="application/json", HTTP_SANDBOX_SIGNATURE="t=1,v1=0")
    assert bad.status_code == 400
    first = client.post(
        url, body, content_type="application/json", HTTP_SANDBOX_SIGNATURE=signature
    )
    second = client.post(
        url, body, content_type="application/json", HTTP_SANDBOX_SIGNATURE=signature
    )
    assert (first.status_code, first.json()) == (200, {"result": "credited"})
    assert (second.status_code, second.json()) == (200, {"result": "duplicate"})
    assert _balance(wallet) == 50_000
    other = reverse("billing:payment_webhook", kwargs={"provider": "nope"})
    assert client.post(other, body, content_type="application/json").status_code == 404
    assert client.get(url).status_code == 405


def test_without_a_secret_the_sandbox_is_off(settings: Any) -> None:
    settings.PAYMENT_SANDBOX_SECRET = None
    url = reverse("billing:payment_webhook", kwargs={"provider": "sandbox"})
    assert Client().post(url, b"{}", content_type="application/json").status_code == 404


def test_outside_development_the_secret_alone_does_not_turn_the_sandbox_on(
    settings: Any,
) -> None:
    # Issue 12, finding 7: with DEBUG off, a sandbox secret left in the environment let any
    # payer top up for free. It now also needs PAYMENT_SANDBOX_ENABLED (default: DEBUG).
    settings.PAYMENT_SANDBOX_ENABLED = False
    assert settings.PAYMENT_SANDBOX_SECRET
    url = reverse("billing:payment_webhook", kwargs={"provider": "sandbox"})
    assert Client().post(url, b"{}", content_type="application/json").status_code == 404
    with pytest.raises(ProviderUnavailable):
        provider_get("sandbox")


# --- Pages ----------------------------------------------------------------------------------


def test_a_resident_tops_up_from_the_portal(
    world: World, client_for: Callable[[User], Client]
) -> None:
    wallet = _wallet(world.account_a)
    client = client_for(world.pat)  # a payer
    page = reverse("billing:topup", kwargs={"account_id": world.account_a.public_id})
    form = client.get(page)
    assert form.status_code == 200 and "TWD" in form.content.decode()
    key = form.context["form"]["idempotency_key"].value()
    response = client.post(page, {"amount": "250.50", "idempotency_key": key})
    topup = TopUp.objects.get()
    assert topup.amount == 25_050 and topup.created_by == world.pat
    assert response.status_code == 302 and response["Location"].endswith("/sandbox-checkout/")
    # A double submit of the same form makes no second top-up.
    assert client.post(page, {"amount": "250.50", "idempotency_key": key}).status_code == 302
    assert TopUp.objects.count() == 1
    checkout = client.get(response["Location"])
    assert checkout.status_code == 200 and "25050" not in checkout.content.decode()
    receipt = client.post(response["Location"], {"action": "pay"})
    assert receipt.status_code == 302
    shown = client.get(receipt["Location"])
    assert shown.status_code == 200 and "250.50 TWD" in shown.content.decode()
    assert _balance(wallet) == 25_050
    # Once paid, the checkout page only leads to the receipt.
    assert client.get(response["Location"]).status_code == 302


def test_the_topup_form_refuses_bad_amounts(
    world: World, client_for: Callable[[User], Client]
) -> None:
    _wallet(world.account_a)
    client = client_for(world.alice)
    page = reverse("billing:topup", kwargs={"account_id": world.account_a.public_id})
    for amount in ("0", "-1", "1.005", "abc"):
        assert client.post(page, {"amount": amount, "idempotency_key": "k"}).status_code == 400
    assert not TopUp.objects.exists()


def test_a_viewer_sees_receipts_but_cannot_top_up(
    world: World, client_for: Callable[[User], Client]
) -> None:
    wallet = _wallet(world.account_a)
    topup = _pending(wallet)
    client = client_for(world.bob)
    kwargs = {"account_id": world.account_a.public_id}
    assert client.get(reverse("billing:topup", kwargs=kwargs)).status_code == 403
    receipt = reverse("billing:topup_receipt", kwargs={**kwargs, "topup_id": topup.public_id})
    assert client.get(receipt).status_code == 200


# --- API --------------------------------------------------------------------------------------


def test_api_topups_need_an_idempotency_key_and_replay_by_it(
    world: World, client_for: Callable[[User], Client]
) -> None:
    _wallet(world.account_a)
    client = client_for(world.pat)
    url = reverse("billing:api_topups", kwargs={"account_id": world.account_a.public_id})
    assert client.post(url, {"amount": "100"}, content_type="application/json").status_code == 400
    created = client.post(
        url, {"amount": "100"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="abc"
    )
    assert created.status_code == 201, created.content
    data = created.json()
    assert (data["amount"], data["amount_minor"], data["status"]) == ("100.00", 10_000, "pending")
    assert data["checkout_url"].startswith("http://testserver/a/")
    replay = client.post(
        url, {"amount": "100"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="abc"
    )
    assert replay.status_code == 200 and replay.json()["id"] == data["id"]
    other = client.post(
        url, {"amount": "101"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="abc"
    )
    assert other.status_code == 422
    assert (
        client.post(
            url, {"amount": "1.001"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="d"
        ).status_code
        == 400
    )
    assert TopUp.objects.count() == 1
    listed = client.get(url).json()
    assert [t["id"] for t in listed] == [data["id"]]
    detail = reverse(
        "billing:api_topup_detail",
        kwargs={"account_id": world.account_a.public_id, "topup_id": data["id"]},
    )
    assert client.get(detail).json()["id"] == data["id"]


# --- Admin ----------------------------------------------------------------------------------


def test_staff_refund_and_adjust_in_the_admin_with_a_reason(settings: Any) -> None:
    settings.PORTAL_STAFF_REQUIRE_MFA = False
    staff = make_user("officer@example.com", staff=True)
    client = Client()
    client.force_login(staff)
    wallet = _wallet()
    topup = _pending(wallet, amount=10_000)
    _deliver(*_pay(topup))
    refund_url = reverse("admin:billing_topup_refund", args=[topup.pk])
    page = client.get(refund_url)
    assert page.status_code == 200
    key = page.context["form"]["idempotency_key"].value()
    assert (
        client.post(refund_url, {"amount": "10", "reason": "", "idempotency_key": key}).status_code
        == 200
    )
    done = client.post(
        refund_url, {"amount": "10", "reason": "duplicate payment", "idempotency_key": key}
    )
    assert done.status_code == 302
    assert _balance(wallet) == 9_000
    adjust_url = reverse("admin:billing_wallet_adjust", args=[wallet.pk])
    key = client.get(adjust_url).context["form"]["idempotency_key"].value()
    done = client.post(
        adjust_url, {"amount": "-5", "reason": "meter fault", "idempotency_key": key}
    )
    assert done.status_code == 302
    assert _balance(wallet) == 8_500
    change = reverse("admin:billing_wallet_change", args=[wallet.pk])
    # Typed in TWD, kept in minor units.
    assert client.post(change, {"emergency_credit": "300"}).status_code == 302
    assert Wallet.objects.get(pk=wallet.pk).emergency_credit == 300_00
    events = set(AuditLogEntry.objects.values_list("event_type", flat=True))
    assert {
        AuditEvent.TOPUP_REFUNDED,
        AuditEvent.WALLET_ADJUSTED,
        AuditEvent.WALLET_UPDATED,
    } <= events
    entry = JournalEntry.objects.filter(kind="topup").get()
    assert (
        client.get(reverse("admin:billing_journalentry_change", args=[entry.pk])).status_code == 200
    )
    assert client.get(reverse("admin:billing_journalentry_add")).status_code == 403
    assert settings.PAYMENT_SANDBOX_SECRET  # the test settings give the sandbox a key


def test_the_sandbox_posts_its_signed_webhook_to_the_portal_over_http(
    transactional_db: None, live_server: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import billing.views

    settings.PAYMENT_SANDBOX_DELIVERY = "http"
    settings.PORTAL_BASE_URL = live_server.url
    posted: list[bool] = []

    def spy(**kwargs: Any) -> bool:
        answered = webhook_post(**kwargs)
        posted.append(answered)
        return answered

    monkeypatch.setattr(billing.views, "webhook_post", spy)
    payer = make_user("payer@example.com")
    wallet = _wallet()
    make_membership(payer, Role.PAYER, account=wallet.account)
    topup = _pending(wallet)
    client = Client()
    client.force_login(payer)
    checkout = reverse(
        "billing:sandbox_checkout",
        kwargs={"account_id": wallet.account.public_id, "topup_id": topup.public_id},
    )
    assert client.post(checkout, {"action": "pay"}).status_code == 302
    assert posted == [True]  # answered 2xx over loopback: not handled in-process
    assert _balance(wallet) == 50_000
    assert WebhookEvent.objects.get().deliveries == 1
