"""The account's alerts: meter events (leak, tamper, battery, …) and low-credit warnings.

Everyone who can see the account's meters sees its alerts; acknowledging a meter event takes
`alerts:acknowledge` (managers and owners). Events are those of the account's meters during
its own supply periods, so a new occupant never sees the previous occupant's. Low-credit
warnings are not acknowledged: they end when the credit is topped up.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from typing import Any, overload

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.selectors import shortage_alerts_for_account
from meters.models import MeterEvent
from meters.selectors.alerts import alert_event_for_account, alert_events_for_account
from meters.services.events import meter_event_acknowledge
from portal.tenancy.models import Account
from portal.tenancy.scopes import Scope
from portal.tenancy.views.base import AccountView
from web.alert_rows import AlertRow, event_row, warning_row

PAGE_SIZE = 25
SHOW_CHOICES = ("open", "all")


class _Alerts(Sequence[AlertRow]):
    """Events (a queryset, possibly long) and warnings (a short list) merged newest first, for
    the paginator: a page reads only as many events as the rows up to its end."""

    def __init__(self, events: QuerySet[MeterEvent], warnings: list[AlertRow]) -> None:
        self.events = events
        self.warnings = warnings
        self._count: int | None = None

    def __len__(self) -> int:
        if self._count is None:
            self._count = self.events.count() + len(self.warnings)
        return self._count

    @overload
    def __getitem__(self, index: int) -> AlertRow: ...
    @overload
    def __getitem__(self, index: slice) -> list[AlertRow]: ...
    def __getitem__(self, index: int | slice) -> AlertRow | list[AlertRow]:
        if isinstance(index, int):
            return self[index : index + 1][0]
        stop = index.stop if index.stop is not None else len(self)
        rows = [event_row(e) for e in self.events[:stop]] + self.warnings[:stop]
        rows.sort(key=lambda row: (row.at, row.key), reverse=True)
        return rows[index]


def _show(value: str | None) -> str:
    # An unknown filter falls back to the default rather than failing: it comes from a link.
    return value if value in SHOW_CHOICES else "open"


def _alerts_url(account: Account, show: str) -> str:
    url = reverse("web:account_alerts", kwargs={"account_id": account.public_id})
    return url if show == "open" else f"{url}?show={show}"


class AccountAlertsView(AccountView):
    """GET /a/<account_id>/alerts/?show=open|all: the account's alerts, newest first."""

    required_scope = Scope.METERS_READ
    template_name = "web/alerts.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        show = _show(request.GET.get("show"))
        open_only = show == "open"
        today = timezone.now().astimezone(zoneinfo.ZoneInfo(self.account.time_zone)).date()
        # Low-credit warnings show the balance: billing data, for those who may read it.
        warnings = (
            [
                warning_row(alert, self.account)
                for alert in shortage_alerts_for_account(
                    account_id=self.account.pk, as_of_day=today, open_only=open_only
                )
            ]
            if self.access.has_scope(Scope.BILLING_READ)
            else []
        )
        events = alert_events_for_account(account_id=self.account.pk, open_only=open_only)
        page = Paginator(_Alerts(events, warnings), PAGE_SIZE).get_page(request.GET.get("page"))
        return self.render_to_response(
            self.get_context_data(
                page=page,
                show=show,
                selected={"show": show if show != "open" else ""},
            )
        )


class AccountAlertAcknowledgeView(AccountView):
    """POST /a/<account_id>/alerts/<event_id>/acknowledge/: mark a meter event as handled.

    Acknowledging again changes nothing (and records nothing). With htmx the answer is the
    table row, swapped in place; without JavaScript, a redirect back to the list.
    """

    # GET is not handled (405); every member who sees the alert may ask, the POST needs more.
    required_scope = Scope.METERS_READ
    method_scopes = {"POST": Scope.ALERTS_ACKNOWLEDGE}

    def post(self, request: HttpRequest, *args: Any, event_id: int, **kwargs: Any) -> HttpResponse:
        event = alert_event_for_account(account_id=self.account.pk, event_id=event_id)
        if event is None:
            raise Http404
        event = meter_event_acknowledge(event=event, actor=self.actor(), as_of=timezone.now())
        show = _show(request.POST.get("show"))
        if getattr(request, "htmx", False):
            return self.response_class(
                request=request,
                template="web/_alert_row.html",
                context=self.get_context_data(row=event_row(event), show=show),
            )
        messages.success(request, _("The alert is acknowledged."))
        return HttpResponseRedirect(_alerts_url(self.account, show))
