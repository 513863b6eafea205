"""Django admin: top-ups (with the staff refund) and the payment webhooks as received.

Nothing here is edited in place. A refund is its own page (`<id>/refund/`), reached from the
top-up's page or the "Refund" action, and needs an amount and a reason; it goes through
`topup_refund`, which checks what is left to refund and audits it. Staff need the
`billing.change_topup` permission to refund.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from billing.forms import RefundForm
from billing.models import TopUp, WebhookEvent, WebhookRejection
from billing.payments.selectors import topup_refunded
from billing.services.topups import TopUpError, topup_refund
from portal.adminsite import ReadOnlyModelAdmin, money_display
from portal.audit.actors import UserActor
from portal.lib.money import format_minor
from portal.lib.rows import row_or_404


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyModelAdmin):
    list_display = (
        "created_at",
        "account",
        "amount_shown",
        "status",
        "provider",
        "provider_ref",
        "updated_at",
    )
    list_filter = ("status", "provider", "currency")
    search_fields = ("public_id", "provider_ref", "account__number", "account__name")
    date_hierarchy = "created_at"
    list_select_related = ("account",)
    fields = (
        "public_id",
        "account",
        "wallet",
        "amount_shown",
        "status",
        "provider",
        "provider_ref",
        "entry",
        "created_by",
        "created_at",
        "updated_at",
        "error",
        "refund_link",
    )
    readonly_fields = fields
    actions = ["refund"]

    amount_shown = money_display("amount", _("amount"))

    @admin.display(description=_("refund"))
    def refund_link(self, obj: TopUp) -> str:
        if obj.status != TopUp.Status.SUCCEEDED:
            return "-"
        url = reverse("admin:billing_topup_refund", args=[obj.pk])
        return format_html('<a class="button" href="{}">{}</a>', url, _("Refund…"))

    def has_refund_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.change_topup")

    @admin.action(description=_("Refund the selected top-up"), permissions=["refund"])
    def refund(self, request: HttpRequest, queryset: QuerySet[TopUp]) -> HttpResponse | None:
        if queryset.count() != 1:
            messages.error(request, _("Refund one top-up at a time."))
            return None
        topup = queryset.get()
        return HttpResponseRedirect(reverse("admin:billing_topup_refund", args=[topup.pk]))

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:topup_id>/refund/",
                self.admin_site.admin_view(self.refund_view),
                name="billing_topup_refund",
            ),
            *super().get_urls(),
        ]

    def refund_view(self, request: HttpRequest, topup_id: int) -> HttpResponse:
        if not self.has_refund_permission(request):
            raise PermissionDenied
        topup = row_or_404(TopUp, topup_id, "account", "wallet")
        form = RefundForm(request.POST or None, currency=topup.currency)
        if request.method == "POST" and form.is_valid():
            try:
                topup_refund(
                    topup=topup,
                    amount=form.minor,
                    reason=form.cleaned_data["reason"],
                    idempotency_key=form.cleaned_data["idempotency_key"],
                    actor=UserActor.from_request(request),
                    as_of=timezone.now(),
                )
            except TopUpError as error:
                form.add_error(None, str(error.message))
            else:
                messages.success(request, _("The refund was posted."))
                return HttpResponseRedirect(reverse("admin:billing_topup_change", args=[topup.pk]))
        refunded = topup_refunded(topup=topup)
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "opts": self.model._meta,
            "original": topup,
            "title": _("Refund top-up"),
            "summary": [
                (_("Account"), f"{topup.account.number} {topup.account.name}"),
                (_("Paid"), format_minor(topup.amount, topup.currency)),
                (_("Refunded so far"), format_minor(refunded, topup.currency)),
                (_("Wallet balance"), format_minor(topup.wallet.balance, topup.currency)),
            ],
        }
        return TemplateResponse(request, "admin/billing/money_form.html", context)


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyModelAdmin):
    list_display = (
        "received_at",
        "provider",
        "event_id",
        "event_type",
        "verified",
        "deliveries",
        "processed_at",
        "error",
    )
    list_filter = ("provider", "verified", "event_type")
    search_fields = ("event_id", "body")
    date_hierarchy = "received_at"


@admin.register(WebhookRejection)
class WebhookRejectionAdmin(ReadOnlyModelAdmin):
    list_display = ("hour", "provider", "reason", "count", "last_at", "last_address", "last_size")
    list_filter = ("provider", "reason")
    date_hierarchy = "hour"
