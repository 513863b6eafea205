"""Read-only audit log pages for members with `audit:read`, filtered to their tenant."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.dateparse import parse_date

from portal.audit.events import AUDIT_EVENTS, EVENTS_BY_API_NAME
from portal.audit.models import AuditLogEntry
from portal.audit.selectors import audit_entries_for_account, audit_entries_for_organisations
from portal.tenancy.scopes import Scope
from portal.tenancy.selectors import organisation_subtree_ids
from portal.tenancy.views.base import AccountView, OrganisationView

PAGE_SIZE = 50


class _AuditFilters:
    """Parse the page's filters: `event` (a dotted name) and `since` (a date)."""

    request: HttpRequest

    def filters(self) -> tuple[list[int] | None, dt.datetime | None, dict[str, str]]:
        event = self.request.GET.get("event", "")
        since_text = self.request.GET.get("since", "")
        event_types = [int(EVENTS_BY_API_NAME[event])] if event in EVENTS_BY_API_NAME else None
        try:
            since_date = parse_date(since_text) if since_text else None
        except ValueError:  # well-formed but impossible, such as 2026-13-45
            since_date = None
        since = dt.datetime.combine(since_date, dt.time.min, tzinfo=dt.UTC) if since_date else None
        return event_types, since, {"event": event if event_types else "", "since": since_text}

    def page_context(
        self, entries: QuerySet[AuditLogEntry], selected: dict[str, str]
    ) -> dict[str, Any]:
        page = Paginator(entries.select_related(None), PAGE_SIZE).get_page(
            self.request.GET.get("page")
        )
        return {
            "page": page,
            "event_names": sorted(spec.api_name for spec in AUDIT_EVENTS.values()),
            "selected": selected,
        }


class AccountAuditView(_AuditFilters, AccountView):
    required_scope = Scope.AUDIT_READ
    template_name = "audit/log.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        event_types, since, selected = self.filters()
        entries = audit_entries_for_account(
            account_id=self.account.pk, since=since, event_types=event_types
        )
        return self.render_to_response(
            self.get_context_data(
                tenant=self.account,
                # Shown in the account's own zone; stored in UTC.
                display_tz=self.account.time_zone,
                **self.page_context(entries, selected),
            )
        )


class OrganisationAuditView(_AuditFilters, OrganisationView):
    required_scope = Scope.AUDIT_READ
    template_name = "audit/log.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        event_types, since, selected = self.filters()
        entries = audit_entries_for_organisations(
            organisation_ids=organisation_subtree_ids(organisation=self.organisation),
            since=since,
            event_types=event_types,
        )
        return self.render_to_response(
            self.get_context_data(
                tenant=self.organisation,
                # Organisations span accounts in several zones: their log is in UTC.
                display_tz="UTC",
                **self.page_context(entries, selected),
            )
        )
