"""The organisation's accounts table: every account of its subtree with balance, days of credit
left, this month's imported and exported energy, last contact and open alerts; sorted, filtered
and paginated in SQL (see web.selectors), and the same rows as a streamed CSV."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

from django import forms
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from meters.models import UtilityKind
from meters.units import display_unit, kind_base_unit
from portal.lib.csvsafe import csv_lines
from portal.tenancy.models import Account
from portal.tenancy.scopes import Scope
from portal.tenancy.services.access import csv_export_record
from portal.tenancy.views.base import OrganisationView
from web.selectors import (
    DEFAULT_SORT,
    EXPORT_KEYS,
    KINDS,
    SORT_CHOICES,
    AccountFilters,
    AccountRow,
    OrganisationNode,
    organisation_accounts_table,
    organisation_exporting_kinds,
    organisation_subtree,
    organisation_utility_kinds,
)

PAGE_SIZE = 50


class AccountFilterForm(forms.Form):
    """The table's filters and sort, from the query string."""

    q = forms.CharField(label=gettext_lazy("Search"), required=False, max_length=100)
    subsidiary = forms.ChoiceField(label=gettext_lazy("Subsidiary"), required=False)
    mode = forms.ChoiceField(
        label=gettext_lazy("Payment mode"),
        required=False,
        choices=[("", gettext_lazy("All")), *Account.PaymentMode.choices],
    )
    low = forms.BooleanField(label=gettext_lazy("Low balance only"), required=False)
    alerts = forms.BooleanField(label=gettext_lazy("With open alerts"), required=False)
    sort = forms.ChoiceField(
        required=False,
        choices=[(key, key) for key in SORT_CHOICES],
        widget=forms.HiddenInput,
    )

    def __init__(self, data: Any, *, nodes: list[OrganisationNode]) -> None:
        super().__init__(data)
        self._paths = {str(n.organisation.public_id): n.organisation.path for n in nodes}
        subsidiary = cast(forms.ChoiceField, self.fields["subsidiary"])
        subsidiary.choices = [
            ("", _("All")),
            *(
                (str(n.organisation.public_id), "\u2003" * n.level + n.organisation.name)
                for n in nodes
            ),
        ]
        for name in ("q", "subsidiary", "mode"):
            self.fields[name].widget.attrs["class"] = (
                "form-select" if name != "q" else "form-control"
            )
        for name in ("low", "alerts"):
            self.fields[name].widget.attrs["class"] = "form-check-input"
        self.fields["q"].widget.attrs["type"] = "search"

    def filters(self) -> AccountFilters:
        data = self.cleaned_data
        return AccountFilters(
            search=data["q"].strip(),
            subsidiary_path=self._paths.get(data["subsidiary"], ""),
            payment_mode=data["mode"],
            low_only=data["low"],
            with_alerts=data["alerts"],
        )

    def sort_key(self) -> str:
        return str(self.cleaned_data["sort"] or DEFAULT_SORT)

    def selected(self) -> dict[str, str]:
        """The filters as query-string values (empty when not set), for links."""
        data = self.cleaned_data
        return {
            "q": data["q"].strip(),
            "subsidiary": data["subsidiary"],
            "mode": data["mode"],
            "low": "1" if data["low"] else "",
            "alerts": "1" if data["alerts"] else "",
            "sort": data["sort"] if data["sort"] != DEFAULT_SORT else "",
        }


def _kind_unit(kind: str) -> str:
    """A column's unit: accounts of one kind are summed, so the kind's default unit."""
    return display_unit(kind_base_unit(kind)).unit


def _query(values: dict[str, str]) -> str:
    return urlencode({key: value for key, value in values.items() if value})


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    numeric: bool
    sort_url: str
    aria_sort: str  # "ascending", "descending" or "" when the table is not sorted by it


def _column_labels(kinds: list[str], exporting: list[str]) -> list[tuple[str, str, bool]]:
    columns = [
        ("number", _("Account number"), False),
        ("name", _("Name"), False),
        ("subsidiary", _("Subsidiary"), False),
        ("payment_mode", _("Payment mode"), False),
        ("balance", _("Balance"), True),
        ("days_left", _("Days left"), True),
    ]
    for kind in kinds:
        unit = _kind_unit(kind)
        label = _("%(kind)s this month (%(unit)s)") % {
            "kind": UtilityKind(kind).label,
            "unit": unit,
        }
        columns.append((kind, label, True))
    for kind in exporting:
        unit = _kind_unit(kind)
        label = _("%(kind)s exported this month (%(unit)s)") % {
            "kind": UtilityKind(kind).label,
            "unit": unit,
        }
        columns.append((EXPORT_KEYS[kind], label, True))
    columns += [("last_contact", _("Last contact"), False), ("alerts", _("Open alerts"), True)]
    return columns


def _columns(
    selected: dict[str, str], sort: str, kinds: list[str], exporting: list[str]
) -> list[Column]:
    columns = []
    for key, label, numeric in _column_labels(kinds, exporting):
        if sort == key:
            aria, following = "ascending", f"-{key}"
        elif sort == f"-{key}":
            aria, following = "descending", key
        else:
            aria, following = "", key
        query = _query({**selected, "sort": following if following != DEFAULT_SORT else ""})
        columns.append(Column(key, label, numeric, f"?{query}", aria))
    return columns


class _AccountsTable:
    """Parse the query string of the table and its export."""

    request: HttpRequest

    withheld_paths: tuple[str, ...]

    def parse(self, organisation: Any) -> tuple[AccountFilterForm, list[OrganisationNode]]:
        nodes = organisation_subtree(organisation=organisation, withheld=self.withheld_paths)
        return AccountFilterForm(self.request.GET, nodes=nodes), nodes


class OrganisationAccountsView(_AccountsTable, OrganisationView):
    """GET /o/<org_id>/accounts/: every account of the organisation and its subsidiaries."""

    required_scope = Scope.METERS_READ
    template_name = "web/organisation_accounts.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form, _nodes = self.parse(self.organisation)
        if not form.is_valid():
            # The filters come from this page's own form and links: anything else is refused
            # with the form's messages rather than silently widened.
            return self.render_to_response(
                self.get_context_data(form=form, page=None, columns=[], rows=[]), status=400
            )
        sort = form.sort_key()
        table = organisation_accounts_table(
            organisation=self.organisation,
            as_of=timezone.now(),
            credit_alerts=self.access.has_scope(Scope.BILLING_READ),
            filters=form.filters(),
            sort=sort,
            withheld=self.withheld_paths,
        )
        page = table.page(request.GET.get("page"), size=PAGE_SIZE)
        selected = form.selected()
        # Consumption columns for the utilities the subtree has, not all four.
        kinds = organisation_utility_kinds(
            organisation=self.organisation, withheld=self.withheld_paths
        )
        if sort.lstrip("-") in KINDS and sort.lstrip("-") not in kinds:
            kinds = [k for k in KINDS if k in {*kinds, sort.lstrip("-")}]
        # Exported energy for the utilities whose meters export (rooftop solar), apart.
        exporting = organisation_exporting_kinds(
            organisation=self.organisation, withheld=self.withheld_paths
        )
        sorted_by = next((k for k, key in EXPORT_KEYS.items() if key == sort.lstrip("-")), None)
        if sorted_by is not None and sorted_by not in exporting:
            exporting = [k for k in KINDS if k in {*exporting, sorted_by}]
        shown = [KINDS.index(kind) for kind in kinds]
        shown_export = [KINDS.index(kind) for kind in exporting]
        return self.render_to_response(
            self.get_context_data(
                form=form,
                page=page,
                rows=[
                    (
                        row,
                        [row.usage[i] for i in shown] + [row.export_usage[i] for i in shown_export],
                    )
                    for row in page.object_list
                ],
                selected=selected,
                columns=_columns(selected, sort, kinds, exporting),
                exporting=bool(exporting),
                export_query=_query(selected),
                filtered=any(v for k, v in selected.items() if k != "sort"),
            )
        )


CSV_HEADER = [
    "account_number",
    "name",
    "subsidiary",
    "payment_mode",
    "balance",
    "currency",
    "days_left",
    *(f"{kind}_{_kind_unit(kind).replace('³', '3').lower()}" for kind in KINDS),
    # Exported energy apart from the imports above: never netted with them.
    *(f"{EXPORT_KEYS[kind]}_{_kind_unit(kind).replace('³', '3').lower()}" for kind in KINDS),
    "last_contact_utc",
    "open_alerts",
    "closed",
]


def _csv_row(row: AccountRow) -> list[object]:
    return [
        row.number,
        row.name,
        row.organisation_name,
        row.payment_mode,
        row.balance_amount,
        row.currency if row.balance is not None else "",
        row.days_left,
        *row.usage,
        *row.export_usage,
        row.last_contact.astimezone(dt.UTC).isoformat() if row.last_contact else "",
        row.open_alerts,
        "yes" if row.closed_at else "",
    ]


class OrganisationAccountsCsvView(_AccountsTable, OrganisationView):
    """GET /o/<org_id>/accounts/export.csv: the table with the same filters and sort, streamed."""

    required_scope = Scope.EXPORT

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        form, _nodes = self.parse(self.organisation)
        if not form.is_valid():
            errors = "; ".join(
                f"{name}: {' '.join(str(m) for m in messages)}"
                for name, messages in form.errors.items()
            )
            return HttpResponse(
                _("Invalid filters: %(errors)s") % {"errors": errors},
                status=400,
                content_type="text/plain; charset=utf-8",
            )
        as_of = timezone.now()
        selected = form.selected()
        csv_export_record(
            actor=self.actor(),
            export="organisation_accounts",
            organisation=self.organisation,
            query=_query(selected),
        )
        table = organisation_accounts_table(
            organisation=self.organisation,
            as_of=as_of,
            credit_alerts=self.access.has_scope(Scope.BILLING_READ),
            filters=form.filters(),
            sort=form.sort_key(),
            withheld=self.withheld_paths,
        )

        def rows() -> Iterator[list[object]]:
            for row in table:
                yield _csv_row(row)

        response = StreamingHttpResponse(
            csv_lines(CSV_HEADER, rows()), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="accounts-{as_of:%Y%m%d}.csv"'
        return response
