"""Portal pages of top-ups, the sandbox provider's checkout page, and the payment webhooks.

A resident with `billing:topup` starts a top-up on the account's top-up page, pays on the
provider's checkout page (for the sandbox, a page of this app), and lands on the receipt,
which shows the outcome and the new balance. The webhook endpoint is public: the provider's
signature is the credential, and it answers nothing tenant-specific.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
import zoneinfo
from typing import Any

from django.conf import settings
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from billing.forms import TopUpForm
from billing.models import Bill, JournalEntry, TopUp
from billing.payments.base import ProviderError, ProviderUnavailable
from billing.payments.providers import provider_get
from billing.payments.sandbox import SandboxProvider, webhook_post
from billing.payments.selectors import topup_for_account, topups_for_account
from billing.pdf import bill_context, bill_pdf_render
from billing.selectors import (
    LedgerLine,
    bill_for_account,
    bills_for_account,
    credit_state,
    credit_used_up,
    wallet_for_account,
    wallet_ledger,
)
from billing.services.bills import bill_pdf_download_record
from billing.services.topups import (
    TopUpError,
    topup_check,
    topup_checkout_start,
    topup_create,
    webhook_receive,
)
from portal.lib.money import format_money
from portal.lib.ratelimit import rate_limited
from portal.tenancy.scopes import Scope
from portal.tenancy.views.base import AccountView

WEBHOOK_MAX_BODY = 64 * 1024
_TOPUP = {"POST": Scope.BILLING_TOPUP}
_WAITING = (TopUp.Status.PENDING, TopUp.Status.UNKNOWN)


def _receipt_url(account_id: uuid.UUID, topup: TopUp) -> str:
    return reverse(
        "billing:topup_receipt", kwargs={"account_id": account_id, "topup_id": topup.public_id}
    )


class TopUpView(AccountView):
    """The account's balance, a top-up form and the latest top-ups."""

    required_scope = Scope.BILLING_TOPUP
    method_scopes = _TOPUP
    template_name = "billing/topup.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._page(None)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wallet = wallet_for_account(account_id=self.account.pk)
        if wallet is None:
            return self._page(None, status=400)
        form = TopUpForm(request.POST, currency=wallet.currency)
        if form.is_valid():
            now = timezone.now()
            try:
                topup, _new = topup_create(
                    account=self.account,
                    amount=form.minor,
                    idempotency_key=form.cleaned_data["idempotency_key"],
                    actor=self.actor(),
                    as_of=now,
                )
                topup, checkout_url = topup_checkout_start(
                    topup=topup, actor=self.actor(), as_of=now
                )
            except TopUpError as error:
                form.add_error(None, str(error.message))
            else:
                return HttpResponseRedirect(
                    checkout_url or _receipt_url(self.account.public_id, topup)
                )
        return self._page(form, status=400)

    def _page(self, form: TopUpForm | None, status: int = 200) -> HttpResponse:
        wallet = wallet_for_account(account_id=self.account.pk)
        if wallet is not None and form is None:
            form = TopUpForm(currency=wallet.currency)
        topups = topups_for_account(account_id=self.account.pk)[:10]
        context = self.get_context_data(
            wallet=wallet,
            balance=format_money(wallet.balance, wallet.currency) if wallet else None,
            form=form,
            topups=[(t, format_money(t.amount, t.currency)) for t in topups],
        )
        return self.render_to_response(context, status=status)


class TopUpReceiptView(AccountView):
    """One top-up: its status and, once paid, the new balance. While the outcome is open, a
    payer may ask the provider again (POST)."""

    required_scope = Scope.BILLING_READ
    method_scopes = _TOPUP
    template_name = "billing/receipt.html"

    def post(
        self, request: HttpRequest, *args: Any, topup_id: uuid.UUID, **kwargs: Any
    ) -> HttpResponse:
        topup = topup_for_account(account_id=self.account.pk, public_id=topup_id)
        if topup is None:
            raise Http404
        topup_check(topup=topup, actor=self.actor(), as_of=timezone.now())
        return HttpResponseRedirect(_receipt_url(self.account.public_id, topup))

    def get(
        self, request: HttpRequest, *args: Any, topup_id: uuid.UUID, **kwargs: Any
    ) -> HttpResponse:
        topup = topup_for_account(account_id=self.account.pk, public_id=topup_id)
        if topup is None:
            raise Http404
        wallet = wallet_for_account(account_id=self.account.pk)
        context = self.get_context_data(
            topup=topup,
            amount=format_money(topup.amount, topup.currency),
            balance=format_money(wallet.balance, wallet.currency) if wallet else None,
            waiting=topup.status in _WAITING,
            # A payment still open after this long is not worth asking about every 2 seconds:
            # the page stops polling and the payer can ask again with the button.
            polling=topup.status in _WAITING
            and timezone.now() - topup.created_at < RECEIPT_POLL_FOR,
        )
        if getattr(request, "htmx", False):
            # The status block polls itself while the payment is open (see receipt.html).
            return self.response_class(
                request=request, template="billing/_receipt_status.html", context=context
            )
        return self.render_to_response(context)


RECEIPT_POLL_FOR = dt.timedelta(minutes=5)


class SandboxCheckoutView(AccountView):
    """The sandbox provider's checkout page: "Pay" or "Decline", nothing real is charged.

    On submit the server (never the browser) sends the sandbox's signed webhook: to the
    portal's own endpoint over HTTP when PAYMENT_SANDBOX_DELIVERY is "http" (as a real
    provider would), else, or when that does not answer, handled in-process. Either way it
    goes through the same verification and deduplication.
    """

    required_scope = Scope.BILLING_TOPUP
    method_scopes = _TOPUP
    template_name = "billing/checkout.html"

    def get(
        self, request: HttpRequest, *args: Any, topup_id: uuid.UUID, **kwargs: Any
    ) -> HttpResponse:
        topup = self._topup(topup_id)
        if topup.status != TopUp.Status.PENDING:
            return HttpResponseRedirect(_receipt_url(self.account.public_id, topup))
        return self.render_to_response(
            self.get_context_data(topup=topup, amount=format_money(topup.amount, topup.currency))
        )

    def post(
        self, request: HttpRequest, *args: Any, topup_id: uuid.UUID, **kwargs: Any
    ) -> HttpResponse:
        topup = self._topup(topup_id)
        provider = self._provider()
        now = timezone.now()
        try:
            body, headers = provider.checkout_complete(
                reference=topup.public_id, paid=request.POST.get("action") == "pay", as_of=now
            )
        except ProviderError:
            return HttpResponseRedirect(_receipt_url(self.account.public_id, topup))
        delivered = False
        if settings.PAYMENT_SANDBOX_DELIVERY == "http":
            url = settings.PORTAL_BASE_URL.rstrip("/") + reverse(
                "billing:payment_webhook", kwargs={"provider": provider.name}
            )
            delivered = webhook_post(url=url, body=body, headers=headers, timeout=5.0)  # not money
        if not delivered:
            webhook_receive(provider=provider, body=body, headers=headers, as_of=now)
        return HttpResponseRedirect(_receipt_url(self.account.public_id, topup))

    def _topup(self, topup_id: uuid.UUID) -> TopUp:
        topup = topup_for_account(account_id=self.account.pk, public_id=topup_id)
        if topup is None or topup.provider != SandboxProvider.name:
            raise Http404
        return topup

    def _provider(self) -> SandboxProvider:
        try:
            provider = provider_get(SandboxProvider.name)
        except ProviderUnavailable:
            raise Http404 from None
        if not isinstance(provider, SandboxProvider):
            raise Http404
        return provider


@method_decorator(csrf_exempt, name="dispatch")
class PaymentWebhookView(View):
    """POST /payments/webhooks/<provider>/: a payment provider's event.

    Public and CSRF-exempt: the provider's signature is the credential (checked by the
    service after the raw body is stored). Unknown or unconfigured providers answer 404.
    """

    http_method_names = ["post"]

    def post(self, request: HttpRequest, provider: str) -> HttpResponse:
        try:
            found = provider_get(provider)
        except ProviderUnavailable:
            raise Http404 from None
        address = getattr(request, "client_ip", None)
        window = 60
        if rate_limited(
            f"webhook:{provider}:{address}",
            limit=settings.PAYMENT_WEBHOOK_RATE_PER_MINUTE,
            window_seconds=window,
        ):
            response = JsonResponse({"error": _("Too many deliveries; retry later.")}, status=429)
            response["Retry-After"] = str(window)
            return response
        if int(request.headers.get("Content-Length") or 0) > WEBHOOK_MAX_BODY:
            return JsonResponse({"error": _("The event is larger than 64 KiB.")}, status=413)
        outcome = webhook_receive(
            provider=found,
            body=request.body,
            headers=request.headers,
            as_of=timezone.now(),
            address=address,
        )
        return JsonResponse({"result": outcome.result}, status=outcome.status)


class AccountBillsView(AccountView):
    """The account's bills and credit notes, with their PDFs."""

    required_scope = Scope.BILLING_READ
    template_name = "billing/bills.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        found = bills_for_account(account_id=self.account.pk)
        # A credit note credits a bill of the same account, already in the list.
        by_id = {bill.pk: bill for bill in found}
        zone = zoneinfo.ZoneInfo(self.account.time_zone)
        bills = [
            {
                "bill": bill,
                "total": format_money(bill.total, bill.currency),
                "credits": by_id.get(bill.credit_note_for_id or 0),
                # The account's date, not the server's: a bill due at 01:00 in Taipei is due
                # that day there.
                "due_on": f"{bill.due_at.astimezone(zone):%Y-%m-%d}" if bill.due_at else "",
            }
            for bill in found
        ]
        return self.render_to_response(self.get_context_data(bills=bills))


class _OneBillView(AccountView):
    """A read-only page of one of the account's bills. Whose bill it is comes before what may
    be done with it: another account's bill is not found, whatever the method."""

    abstract = True
    required_scope = Scope.BILLING_READ
    method_scopes = {"POST": Scope.BILLING_READ}  # only to answer 404/405, see post()

    def bill(self, bill_id: uuid.UUID) -> Bill:
        bill = bill_for_account(account_id=self.account.pk, public_id=bill_id)
        if bill is None:
            raise Http404
        return bill

    def post(
        self, request: HttpRequest, *args: Any, bill_id: uuid.UUID, **kwargs: Any
    ) -> HttpResponse:
        self.bill(bill_id)
        return HttpResponseNotAllowed(["GET"])


class AccountBillView(_OneBillView):
    """One bill or credit note: header, lines and totals exactly as its PDF shows them (the
    same context builds both), with links to the PDF in each language."""

    template_name = "billing/bill.html"

    def get(
        self, request: HttpRequest, *args: Any, bill_id: uuid.UUID, **kwargs: Any
    ) -> HttpResponse:
        bill = self.bill(bill_id)
        context = bill_context(bill=bill)
        # The PDF's own context names the account too; this page's is the tenant's (the same).
        context.pop("account", None)
        return self.render_to_response(self.get_context_data(**context))


class AccountBillPdfView(_OneBillView):
    """One bill as a PDF, in the reader's language (or ?lang=en|zh-hant)."""

    def get(
        self, request: HttpRequest, *args: Any, bill_id: uuid.UUID, **kwargs: Any
    ) -> HttpResponse:
        bill = self.bill(bill_id)
        languages = {code for code, _name in settings.LANGUAGES}
        language = request.GET.get("lang") or getattr(request, "LANGUAGE_CODE", "en")
        if language not in languages:
            language = "en"
        response = HttpResponse(
            bill_pdf_render(bill=bill, language=language), content_type="application/pdf"
        )
        bill_pdf_download_record(bill=bill, actor=self.actor(), language=language)
        response["Content-Disposition"] = f'inline; filename="bill-{bill.number}.pdf"'
        return response


class AccountWalletView(AccountView):
    """The prepaid wallet's movements with the running balance."""

    required_scope = Scope.BILLING_READ
    template_name = "billing/wallet.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wallet = wallet_for_account(account_id=self.account.pk)
        if wallet is None:
            return self.render_to_response(self.get_context_data(wallet=None, lines=[]))
        lines = [
            {
                "line": line,
                "label": _ledger_label(line),
                "detail": _ledger_detail(line),
                "amount": format_money(line.amount, wallet.currency),
                "balance": format_money(line.balance, wallet.currency),
            }
            for line in wallet_ledger(account_id=self.account.pk)
        ]
        # A used-up balance says so here too, as on the account home (the same words).
        used_up = None
        if wallet.balance <= 0:
            today = timezone.localdate(timezone.now(), zoneinfo.ZoneInfo(self.account.time_zone))
            state = credit_state(account_id=self.account.pk, as_of_day=today)
            used_up = credit_used_up(state=state) if state is not None else None
        return self.render_to_response(
            self.get_context_data(
                wallet=wallet,
                balance=format_money(wallet.balance, wallet.currency),
                lines=lines,
                # The last month or so open; older movements on request.
                recent=lines[:WALLET_OPEN_ROWS],
                older=lines[WALLET_OPEN_ROWS:],
                used_up=used_up,
            )
        )


WALLET_OPEN_ROWS = 30
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _ledger_label(line: LedgerLine) -> str:
    """The entry's kind in the reader's language (memos are stored in English, as data)."""
    try:
        return str(JournalEntry.Kind(line.kind).label).capitalize()
    except ValueError:
        return line.kind


def _ledger_detail(line: LedgerLine) -> str:
    """What the memo adds for the resident: the day a charge is for, or the reason staff gave
    for a refund, reversal or adjustment. Top-ups add nothing (their receipt has the details)."""
    if line.kind in (JournalEntry.Kind.CHARGE, JournalEntry.Kind.EXPORT_CREDIT):
        day = _DAY.search(line.memo)
        return day.group(0) if day else ""
    if line.kind in (JournalEntry.Kind.REFUND, JournalEntry.Kind.REVERSAL):
        return line.memo.partition(": ")[2]
    if line.kind == JournalEntry.Kind.ADJUSTMENT:
        return line.memo
    return ""
