"""Bill runs and bills in the admin: start a month's run, void (with a reason), mark paid,
download the PDF. Every write goes through billing.services.bills and is audited; bills and
their lines are never edited or deleted here."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from billing.models import Bill, BillLine, BillRun
from billing.pdf import LANGUAGES, bill_pdf_render
from billing.selectors import bill_run_progress
from billing.services.bills import bill_mark_paid, bill_pdf_download_record, bill_void
from billing.tasks.bills import bill_run_task
from portal.adminsite import ReadOnlyModelAdmin, money_display
from portal.audit.actors import UserActor
from portal.lib.errors import DomainError
from portal.lib.periods import month_start
from portal.lib.rows import row_or_404


class StartRunForm(forms.Form):
    month = forms.DateField(
        label=_("month"),
        help_text=_("Any day of the month to bill, e.g. 2026-04-01."),
        widget=forms.DateInput(attrs={"type": "date"}),
    )


class VoidForm(forms.Form):
    reason = forms.CharField(label=_("reason"), max_length=300, widget=forms.Textarea)


@admin.register(BillRun)
class BillRunAdmin(ReadOnlyModelAdmin):
    change_list_template = "admin/billing/billrun/change_list.html"
    list_display = ("period_start", "status", "bills", "skipped", "started_at", "finished_at")
    list_filter = ("status",)
    ordering = ("-period_start",)
    readonly_fields = (
        "period_start",
        "period_end",
        "status",
        "bills",
        "skipped",
        "error",
        "started_at",
        "finished_at",
        "created_by_label",
    )

    def index_add_url(self, request: HttpRequest) -> str | None:
        """Where the admin index's "Add" of bill runs leads: a run is started, not typed in."""
        if not request.user.has_perm("billing.add_billrun"):
            return None
        return reverse("admin:billing_billrun_start")

    def get_urls(self) -> list[Any]:
        return [
            path(
                "start/",
                self.admin_site.admin_view(self.start_view),
                name="billing_billrun_start",
            ),
            path(
                "<int:run_id>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="billing_billrun_progress",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        run = self.get_object(request, object_id)
        extra = {**(extra_context or {}), **self._progress_context(run)} if run else extra_context
        return super().change_view(request, object_id, form_url, extra)

    def progress_view(self, request: HttpRequest, run_id: int) -> HttpResponse:
        """The run's progress block alone, polled by htmx while the run is running."""
        if not self.has_view_permission(request):
            return HttpResponseRedirect(reverse("admin:index"))
        run = get_object_or_404(BillRun, pk=run_id)
        return TemplateResponse(
            request, "admin/billing/billrun/_progress.html", self._progress_context(run)
        )

    def _progress_context(self, run: BillRun) -> dict[str, Any]:
        return {
            "run": run,
            "progress": bill_run_progress(run=run),
            "running": run.status == BillRun.Status.RUNNING,
        }

    def start_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("billing.add_billrun"):
            return HttpResponseRedirect(reverse("admin:billing_billrun_changelist"))
        form = StartRunForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            month = month_start(form.cleaned_data["month"])
            # The run is the task's: it is idempotent, so starting it twice bills nobody twice.
            transaction.on_commit(
                lambda: bill_run_task.apply_async(kwargs={"period_start": month.isoformat()})
            )
            messages.success(
                request, _("The bill run for %(month)s was started.") % {"month": f"{month:%Y-%m}"}
            )
            return HttpResponseRedirect(reverse("admin:billing_billrun_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Start a bill run"),
            "form": form,
        }
        return TemplateResponse(request, "admin/billing/billrun/start.html", context)


class BillLineInline(admin.TabularInline):  # type: ignore[type-arg]
    model = BillLine
    extra = 0
    can_delete = False
    fields = (
        "position",
        "kind",
        "service_point",
        "label",
        "band",
        "quantity",
        "unit",
        "unit_price",
        "amount_shown",
        "estimated",
    )
    readonly_fields = fields

    amount_shown = money_display("amount", _("amount"), currency="bill.currency")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Bill)
class BillAdmin(ReadOnlyModelAdmin):
    list_display = (
        "number",
        "organisation",
        "account",
        "period_start",
        "status",
        "total_shown",
        "has_estimates",
        "credit_note_for",
    )
    list_filter = ("status", "has_estimates", "period_start")
    search_fields = ("account__number", "account__name", "=number", "=payment_reference")
    list_select_related = ("account", "organisation", "credit_note_for")
    inlines = (BillLineInline,)
    actions = ("mark_paid", "void")
    fields = (
        "number",
        "payment_reference",
        "account",
        "organisation",
        "run",
        "period_start",
        "period_end",
        "currency",
        "status",
        "subtotal_shown",
        "tax_shown",
        "total_shown",
        "has_estimates",
        "credit_note_for",
        "issued_at",
        "due_at",
        "paid_at",
        "voided_at",
        "void_reason",
        "created_at",
        "pdf_links",
    )
    readonly_fields = fields

    subtotal_shown = money_display("subtotal", _("subtotal"))
    tax_shown = money_display("tax", _("tax"))
    total_shown = money_display("total", _("total"))

    @admin.display(description=_("PDF"))
    def pdf_links(self, obj: Bill) -> str:
        return format_html_join(
            " · ",
            '<a href="{}">{}</a>',
            (
                (reverse("admin:billing_bill_pdf", args=[obj.pk, language]), language)
                for language in LANGUAGES
            ),
        )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("billing.view_bill")

    def has_billing_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.change_bill")

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:bill_id>/pdf/<str:language>/",
                self.admin_site.admin_view(self.pdf_view),
                name="billing_bill_pdf",
            ),
            *super().get_urls(),
        ]

    def pdf_view(self, request: HttpRequest, bill_id: int, language: str) -> HttpResponse:
        bill = row_or_404(Bill, bill_id, "account", "organisation", "credit_note_for")
        if language not in LANGUAGES or not self.has_view_permission(request, bill):
            return HttpResponse(status=404)
        response = HttpResponse(bill_pdf_render(bill=bill, language=language), "application/pdf")
        actor = UserActor.from_request(request)
        bill_pdf_download_record(bill=bill, actor=actor, language=language)
        name = f"bill-{bill.number or 'draft'}-{bill.account.number}-{language}.pdf"
        response["Content-Disposition"] = format_html('attachment; filename="{}"', name)
        return response

    @admin.action(description=_("Mark the selected bills paid"), permissions=["billing"])
    def mark_paid(self, request: HttpRequest, queryset: QuerySet[Bill]) -> None:
        actor = UserActor.from_request(request)
        now = timezone.now()
        done = 0
        for bill in queryset:
            try:
                bill_mark_paid(bill=bill, actor=actor, as_of=now)
                done += 1
            except DomainError as error:
                messages.error(request, f"{bill}: {error.message}")
        if done:
            messages.success(request, _("%(n)d bills marked paid.") % {"n": done})

    @admin.action(description=_("Void the selected bills (credit note)"), permissions=["billing"])
    def void(self, request: HttpRequest, queryset: QuerySet[Bill]) -> HttpResponse | None:
        form = VoidForm(request.POST if "reason" in request.POST else None)
        if form.is_valid():
            actor = UserActor.from_request(request)
            now = timezone.now()
            for bill in queryset:
                try:
                    note = bill_void(
                        bill=bill, reason=form.cleaned_data["reason"], actor=actor, as_of=now
                    )
                    messages.success(
                        request,
                        _("Bill %(bill)s voided by credit note %(note)s.")
                        % {"bill": bill.number, "note": note.number},
                    )
                except DomainError as error:
                    messages.error(request, f"{bill}: {error.message}")
            return None
        # The reason is required: ask for it on an intermediate page, then act.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Void bills"),
            "form": form,
            "bills": queryset,
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
        }
        return TemplateResponse(request, "admin/billing/bill/void.html", context)
