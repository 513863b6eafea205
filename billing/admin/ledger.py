"""Django admin: wallets, the chart of ledger accounts, journal entries and their postings.

The ledger is append-only, so its admin only shows it: entries and postings cannot be added,
changed or deleted here. A wallet's balance is read-only (it moves only with postings); staff
change its emergency credit (through `wallet_update`) and post a manual adjustment with a
reason on the wallet's "Adjust balance" page (through `wallet_adjust`), both audited. Staff
need `billing.change_wallet` for either.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from billing.forms import AdjustForm
from billing.models import DailyCharge, JournalEntry, LedgerAccount, Posting, Wallet
from billing.services.ledger import LedgerError, wallet_adjust, wallet_update
from portal.adminsite import ReadOnlyModelAdmin, ServiceModelAdmin, money_display
from portal.lib.errors import DomainError
from portal.lib.money import format_minor, from_minor, minor_exponent, to_minor
from portal.lib.rows import row_or_404


class WalletForm(forms.ModelForm[Wallet]):
    """The emergency credit typed in major units of the wallet's currency (300, not 30000)."""

    emergency_credit = forms.DecimalField(label=_("emergency credit"), min_value=0)

    class Meta:
        model = Wallet
        fields = ["emergency_credit"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        currency = self.instance.currency
        # Built with the currency's places: more decimals are refused, never rounded (as the
        # other amount forms do).
        field = forms.DecimalField(
            label=_("emergency credit"),
            min_value=0,
            max_digits=18,
            decimal_places=minor_exponent(currency),
            help_text=_(
                "In %(currency)s: how far below zero the balance may go before supply is "
                "disconnected."
            )
            % {"currency": currency},
        )
        field.widget.attrs.update({"step": str(from_minor(1, currency)), "inputmode": "decimal"})
        self.fields["emergency_credit"] = field
        self.initial["emergency_credit"] = from_minor(self.instance.emergency_credit, currency)

    def clean_emergency_credit(self) -> int:
        return to_minor(self.cleaned_data["emergency_credit"], self.instance.currency)


@admin.register(Wallet)
class WalletAdmin(ServiceModelAdmin):
    form = WalletForm
    list_display = ("account", "balance_shown", "emergency_credit_shown", "disconnected_at")
    list_select_related = ("account",)
    search_fields = ("account__number", "account__name")
    fields = (
        "account",
        "currency",
        "balance_shown",
        "emergency_credit",
        "disconnected_at",
        "adjust_link",
    )
    readonly_fields = ("account", "currency", "balance_shown", "disconnected_at", "adjust_link")

    balance_shown = money_display("balance", _("balance"))
    emergency_credit_shown = money_display("emergency_credit", _("emergency credit"))

    @admin.display(description=_("adjustment"))
    def adjust_link(self, obj: Wallet) -> str:
        url = reverse("admin:billing_wallet_adjust", args=[obj.pk])
        return format_html('<a class="button" href="{}">{}</a>', url, _("Adjust balance…"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a wallet is opened with its prepaid account

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def service_save(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Wallet:
        try:
            return wallet_update(
                wallet=obj,
                emergency_credit=form.cleaned_data["emergency_credit"],
                actor=self.actor(request),
            )
        except LedgerError as error:
            raise DomainError(str(error)) from None

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:wallet_id>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="billing_wallet_adjust",
            ),
            *super().get_urls(),
        ]

    def adjust_view(self, request: HttpRequest, wallet_id: int) -> HttpResponse:
        if not request.user.has_perm("billing.change_wallet"):
            raise PermissionDenied
        wallet = row_or_404(Wallet, wallet_id, "account")
        form = AdjustForm(request.POST or None, currency=wallet.currency)
        if request.method == "POST" and form.is_valid():
            try:
                wallet_adjust(
                    wallet=wallet,
                    amount=form.minor,
                    reason=form.cleaned_data["reason"],
                    idempotency_key=f"admin:{form.cleaned_data['idempotency_key']}",
                    actor=self.actor(request),
                    as_of=timezone.now(),
                )
            except LedgerError as error:
                form.add_error(None, str(error))
            else:
                messages.success(request, _("The adjustment was posted."))
                return HttpResponseRedirect(
                    reverse("admin:billing_wallet_change", args=[wallet.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "opts": self.model._meta,
            "original": wallet,
            "title": _("Adjust balance"),
            "summary": [
                (_("Account"), f"{wallet.account.number} {wallet.account.name}"),
                (_("Balance"), format_minor(wallet.balance, wallet.currency)),
            ],
        }
        form.fields["amount"].help_text = _(
            "In %(currency)s: positive credits the wallet, negative debits it."
        ) % {"currency": wallet.currency}
        return TemplateResponse(request, "admin/billing/money_form.html", context)


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyModelAdmin):
    list_display = ("code", "kind", "currency", "name")
    list_filter = ("kind", "currency")
    search_fields = ("code", "name")


class PostingInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Posting
    fields = ("ledger_account", "amount_shown")
    readonly_fields = fields

    amount_shown = money_display("amount", _("amount"), currency="entry.currency")
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyModelAdmin):
    list_display = ("pk", "created_at", "kind", "account", "currency", "memo", "created_by_label")
    list_filter = ("kind", "currency")
    search_fields = ("memo", "idempotency_key", "account__number")
    date_hierarchy = "created_at"
    list_select_related = ("account",)
    inlines = [PostingInline]


@admin.register(DailyCharge)
class DailyChargeAdmin(ReadOnlyModelAdmin):
    """A prepaid account's charge per day and service point, as the ledger posted it."""

    list_display = (
        "day",
        "account",
        "service_point",
        "consumption",
        "net_shown",
        "tax_shown",
        "total_shown",
        "credit_shown",
    )
    list_select_related = ("account", "service_point")
    search_fields = ("account__number", "account__name", "service_point__code")
    date_hierarchy = "day"
    ordering = ("-day", "account")
    fields = (
        "account",
        "service_point",
        "day",
        "tariff_version",
        "consumption",
        "export",
        "estimated",
        "net_shown",
        "tax_shown",
        "total_shown",
        "entry",
        "credit_shown",
        "credit_entry",
        "created_at",
    )
    readonly_fields = fields

    net_shown = money_display("net", _("net"), currency="account.currency")
    tax_shown = money_display("tax", _("tax"), currency="account.currency")
    total_shown = money_display("total", _("charge"), currency="account.currency")
    credit_shown = money_display("credit", _("export credit"), currency="account.currency")
