"""Read-only audit log pages for members with `audit:read`, filtered to their tenant."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone, translation
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _

from portal.audit.events import AUDIT_EVENTS, EVENTS_BY_API_NAME
from portal.audit.models import AuditLogEntry
from portal.audit.selectors import audit_entries_for_account, audit_entries_for_organisations
from portal.lib.csvsafe import csv_lines
from portal.lib.periods import local_midnight
from portal.tenancy.models import Account, Organisation
from portal.tenancy.scopes import Scope
from portal.tenancy.selectors import organisation_subtree_ids
from portal.tenancy.services.access import csv_export_record
from portal.tenancy.views.base import AccountView, OrganisationView

PAGE_SIZE = 50


def _midnight_or_end(day: dt.date, time_zone: str) -> dt.datetime:
    """The day's local midnight in UTC; the calendar's first and last days have none in some
    zones (it falls outside what a datetime holds), so they stand for its ends."""
    try:
        return local_midnight(day, time_zone)
    except OverflowError:
        if day.year == dt.MINYEAR:
            return dt.datetime.min.replace(tzinfo=dt.UTC)
        return dt.datetime.max.replace(tzinfo=dt.UTC)


class _AuditFilters:
    """Parse the page's filters: `event` (a dotted name) and `since` (a date)."""

    request: HttpRequest

    def filters(
        self, time_zone: str = "UTC"
    ) -> tuple[list[int] | None, dt.datetime | None, dict[str, str]]:
        """`since` is a day in `time_zone`, the zone the log is shown in."""
        event = self.request.GET.get("event", "")
        since_text = self.request.GET.get("since", "")
        event_types = [int(EVENTS_BY_API_NAME[event])] if event in EVENTS_BY_API_NAME else None
        since_date = self._since_date(since_text)
        since = _midnight_or_end(since_date, time_zone) if since_date else None
        return event_types, since, {"event": event if event_types else "", "since": since_text}

    def filter_errors(self) -> list[str]:
        """What is wrong with the filters: the page ignores such filters, an export refuses
        them rather than widening to the whole log."""
        errors = []
        event = self.request.GET.get("event", "")
        if event and event not in EVENTS_BY_API_NAME:
            errors.append(_("Unknown event: %(event)s") % {"event": event})
        since_text = self.request.GET.get("since", "")
        if since_text and self._since_date(since_text) is None:
            errors.append(_("Enter the day as YYYY-MM-DD."))
        return errors

    @staticmethod
    def _since_date(text: str) -> dt.date | None:
        try:
            return parse_date(text) if text else None
        except ValueError:  # well-formed but impossible, such as 2026-13-45
            return None

    def page_context(
        self, entries: QuerySet[AuditLogEntry], selected: dict[str, str]
    ) -> dict[str, Any]:
        page = Paginator(entries.select_related(None), PAGE_SIZE).get_page(
            self.request.GET.get("page")
        )
        return {
            "page": page,
            "event_choices": event_choices(),
            "selected": selected,
            "export_query": urlencode({k: v for k, v in selected.items() if v}),
        }


class AccountAuditView(_AuditFilters, AccountView):
    required_scope = Scope.AUDIT_READ
    template_name = "audit/log.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        event_types, since, selected = self.filters(self.account.time_zone)
        entries = audit_entries_for_account(
            account_id=self.account.pk, since=since, event_types=event_types
        )
        # Shown in the account's zone, which the base view makes the current one.
        return self.render_to_response(
            self.get_context_data(tenant=self.account, **self.page_context(entries, selected))
        )


class OrganisationAuditView(_AuditFilters, OrganisationView):
    required_scope = Scope.AUDIT_READ
    template_name = "audit/log.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        event_types, since, selected = self.filters(self.organisation.time_zone)
        entries = audit_entries_for_organisations(
            organisation_ids=organisation_subtree_ids(
                organisation=self.organisation, withheld=self.withheld_paths
            ),
            since=since,
            event_types=event_types,
        )
        # Shown in the organisation's zone, which the base view makes the current one.
        return self.render_to_response(
            self.get_context_data(tenant=self.organisation, **self.page_context(entries, selected))
        )


CSV_HEADER = ["time", "event", "actor", "summary", "target"]


def _csv_rows(entries: QuerySet[AuditLogEntry], *, language: str) -> Iterator[list[object]]:
    # The summary is the page's text in the language of the request that asked for the file;
    # the rows are produced after the view has returned, so that language is set again here.
    with translation.override(language):
        for entry in entries.select_related(None).iterator(chunk_size=2000):
            target = f"{entry.target_type}:{entry.target_id}" if entry.target_type else ""
            yield [
                entry.created_at.astimezone(dt.UTC).isoformat(),
                entry.event_name,
                entry.actor_label,
                entry.display,
                target,
            ]


def _csv_response(
    entries: QuerySet[AuditLogEntry], *, tenant: Account | Organisation, as_of: dt.datetime
) -> StreamingHttpResponse:
    name = tenant.number if isinstance(tenant, Account) else f"organisation-{as_of:%Y%m%d}"
    response = StreamingHttpResponse(
        csv_lines(CSV_HEADER, _csv_rows(entries, language=translation.get_language())),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="audit-{name}-{as_of:%Y%m%d}.csv"'
    return response


class AccountAuditCsvView(_AuditFilters, AccountView):
    """The account's log with the page's filters, as a streamed CSV (times in UTC)."""

    required_scope = Scope.AUDIT_READ

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if errors := self.filter_errors():
            return HttpResponseBadRequest(" ".join(errors), content_type="text/plain")
        event_types, since, selected = self.filters(self.account.time_zone)
        entries = audit_entries_for_account(
            account_id=self.account.pk, since=since, event_types=event_types
        )
        csv_export_record(
            actor=self.actor(),
            export="audit_log",
            account=self.account,
            query=urlencode({k: v for k, v in selected.items() if v}),
        )
        return _csv_response(entries, tenant=self.account, as_of=timezone.now())


class OrganisationAuditCsvView(_AuditFilters, OrganisationView):
    """The organisation's log (and its subtree's) with the page's filters, as a streamed CSV."""

    required_scope = Scope.AUDIT_READ

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if errors := self.filter_errors():
            return HttpResponseBadRequest(" ".join(errors), content_type="text/plain")
        event_types, since, selected = self.filters(self.organisation.time_zone)
        entries = audit_entries_for_organisations(
            organisation_ids=organisation_subtree_ids(
                organisation=self.organisation, withheld=self.withheld_paths
            ),
            since=since,
            event_types=event_types,
        )
        csv_export_record(
            actor=self.actor(),
            export="audit_log",
            organisation=self.organisation,
            query=urlencode({k: v for k, v in selected.items() if v}),
        )
        return _csv_response(entries, tenant=self.organisation, as_of=timezone.now())


_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


def event_choices() -> list[tuple[str, str]]:
    """(api name, label) of every event, by label in the reader's language: the label is the
    event's own translated display text with its blanks shown as an ellipsis."""
    choices = [
        (spec.api_name, _PLACEHOLDER.sub("…", str(spec.template))) for spec in AUDIT_EVENTS.values()
    ]
    return sorted(choices, key=lambda choice: choice[1])
