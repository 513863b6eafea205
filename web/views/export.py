"""A resident's data export: ask for one, watch it being prepared, download it.

The page lists the account's recent exports; one being prepared shows a progress bar that htmx
refreshes from the status fragment every two seconds (as a passive request, so polling does not
keep an idle session alive), and stops polling once the export has finished. Downloads go
through this view only, to members with the `export` scope, and each one is audited.
"""

from __future__ import annotations

import uuid
import zoneinfo
from typing import Any

from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils import timezone, translation

from billing.models import DataExport
from billing.selectors import export_for_account, exports_for_account
from billing.services.exports import EXPORT_LIFETIME, export_download_record, export_request
from portal.tenancy.scopes import Scope
from portal.tenancy.views.base import AccountView

_EXPORT = {"POST": Scope.EXPORT}


def _page_url(account_id: uuid.UUID) -> str:
    return reverse("web:account_export", kwargs={"account_id": account_id})


class AccountExportView(AccountView):
    """What an export holds, the button that asks for one, and the recent exports."""

    required_scope = Scope.EXPORT
    method_scopes = _EXPORT
    template_name = "web/export.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        exports = exports_for_account(account_id=self.account.pk)
        return self.render_to_response(
            self.get_context_data(
                exports=exports,
                now=timezone.now(),
                lifetime_days=EXPORT_LIFETIME.days,
                busy=any(not export.finished for export in exports),
            )
        )

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        export_request(
            account=self.account,
            actor=self.actor(),
            as_of=timezone.now(),
            language=translation.get_language() or "en",
        )
        return HttpResponseRedirect(_page_url(self.account.public_id))


class _OneExportView(AccountView):
    """A view of one export of the account; another account's export is not found."""

    abstract = True

    def _export(self, export_id: uuid.UUID) -> DataExport:
        export = export_for_account(account_id=self.account.pk, public_id=export_id)
        if export is None:
            raise Http404
        return export

    def post(
        self, request: HttpRequest, *args: Any, export_id: uuid.UUID, **kwargs: Any
    ) -> HttpResponse:
        # Whose export it is comes before what may be done with it: another account's is not
        # found, whatever the method.
        self._export(export_id)
        return HttpResponseNotAllowed(["GET"])


class AccountExportStatusView(_OneExportView):
    """The status fragment of one export, polled by htmx while it is being prepared."""

    required_scope = Scope.EXPORT
    method_scopes = _EXPORT  # only to answer 404/405, see post()
    template_name = "web/export_status.html"

    def get(
        self, request: HttpRequest, *args: Any, export_id: uuid.UUID, **kwargs: Any
    ) -> HttpResponse:
        export = self._export(export_id)
        if not getattr(request, "htmx", False):
            # Opened directly rather than polled: the page shows it in context.
            return HttpResponseRedirect(_page_url(self.account.public_id))
        return self.render_to_response(self.get_context_data(export=export, now=timezone.now()))


class AccountExportDownloadView(_OneExportView):
    """The ZIP of a finished export, while it has not expired."""

    required_scope = Scope.EXPORT
    method_scopes = _EXPORT  # only to answer 404/405, see post()

    def get(
        self, request: HttpRequest, *args: Any, export_id: uuid.UUID, **kwargs: Any
    ) -> HttpResponseBase:
        export = self._export(export_id)
        if not export.downloadable(timezone.now()):
            raise Http404
        try:
            handle = export.file.open("rb")
        except FileNotFoundError:
            raise Http404 from None
        export_download_record(export=export, actor=self.actor())
        day = export.created_at.astimezone(zoneinfo.ZoneInfo(self.account.time_zone)).date()
        return FileResponse(
            handle,
            as_attachment=True,
            filename=f"account-{self.account.number}-data-{day:%Y-%m-%d}.zip",
            content_type="application/zip",
        )
