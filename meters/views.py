"""Portal pages of the meters app: an organisation's imports, and the ChirpStack endpoint.

Organisation managers upload readings for their own meters (the batch is bound to the
organisation, so readings of anyone else's meters are refused row by row) and follow the
batch's progress; the status fragment is polled by htmx as a passive request.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.conf import settings
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from meters.exceptions import MeterError
from meters.forms import ImportUploadForm
from meters.models import ImportBatch
from meters.selectors.imports import (
    batch_for_organisations,
    batch_row_errors,
    batches_for_organisations,
)
from meters.services.imports import batch_create
from meters.services.inbound import inbound_store
from portal.lib.ratelimit import rate_limited
from portal.tenancy.scopes import Scope
from portal.tenancy.selectors import organisation_subtree_ids
from portal.tenancy.views.base import OrganisationView

_IMPORT = {"POST": Scope.METERS_IMPORT}


class OrganisationImportsView(OrganisationView):
    """The organisation's import batches (its subsidiaries' included), and the upload form."""

    required_scope = Scope.METERS_IMPORT
    method_scopes = _IMPORT
    template_name = "meters/imports.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._page(ImportUploadForm())

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = ImportUploadForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                batch = batch_create(
                    source=ImportBatch.Source.UPLOAD,
                    fmt=form.cleaned_data["format"],
                    content=upload,
                    original_name=upload.name or "",
                    organisation=self.organisation,
                    read_at=form.cleaned_data["read_at"],
                    meter_serial=form.cleaned_data["meter_serial"].strip(),
                    dsmr_spec=form.cleaned_data["dsmr_spec"],
                    actor=self.actor(),
                    as_of=timezone.now(),
                )
            except MeterError as error:
                form.add_error(None, str(error.message))
            else:
                return HttpResponseRedirect(
                    reverse(
                        "meters:organisation_import",
                        kwargs={"org_id": self.organisation.public_id, "batch_id": batch.public_id},
                    )
                )
        return self._page(form, status=400)

    def _page(self, form: ImportUploadForm, status: int = 200) -> HttpResponse:
        batches = batches_for_organisations(
            organisation_ids=organisation_subtree_ids(
                organisation=self.organisation, withheld=self.withheld_paths
            )
        ).select_related("organisation")
        page = Paginator(batches, 25).get_page(self.request.GET.get("page"))
        return self.render_to_response(
            self.get_context_data(form=form, batches_page=page), status=status
        )


class OrganisationImportView(OrganisationView):
    """One batch: its progress, counts and row errors."""

    required_scope = Scope.METERS_IMPORT
    template_name = "meters/import_detail.html"

    def get(
        self, request: HttpRequest, *args: Any, batch_id: uuid.UUID, **kwargs: Any
    ) -> HttpResponse:
        batch = batch_for_organisations(
            public_id=batch_id,
            organisation_ids=organisation_subtree_ids(
                organisation=self.organisation, withheld=self.withheld_paths
            ),
        )
        if batch is None:
            raise Http404
        context = self.get_context_data(
            batch=batch,
            row_errors=batch_row_errors(batch=batch, limit=100),
            running=not batch.finished,
        )
        if getattr(request, "htmx", False):
            return self.response_class(
                request=request, template="meters/_import_status.html", context=context
            )
        return self.render_to_response(context)


# --- ChirpStack HTTP integration ------------------------------------------------------------

CHIRPSTACK_STORED_EVENTS = ("up", "status")
CHIRPSTACK_KNOWN_EVENTS = (
    *CHIRPSTACK_STORED_EVENTS,
    "join",
    "ack",
    "txack",
    "log",
    "location",
    "integration",
)
CHIRPSTACK_MAX_BODY = 256 * 1024


def _problem(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@method_decorator(csrf_exempt, name="dispatch")
class ChirpStackIntegrationView(View):
    """ChirpStack v4's HTTP integration: POST /integrations/chirpstack/?event=up|status.

    The utility's ChirpStack is configured with the header `Authorization: Bearer <token>`
    (settings.CHIRPSTACK_INTEGRATION_TOKEN; without one the endpoint is off). Uplinks and
    status events are kept by deduplicationId, so ChirpStack's retries are harmless, and
    batched into imports by the flush task: never one import per message. Readings of
    meters the utility does not know are refused row by row in that import.
    """

    http_method_names = ["post"]
    # A fixed window of the shared counter (portal.lib.ratelimit).
    rate_window_seconds = 60

    def post(self, request: HttpRequest) -> HttpResponse:
        event = request.GET.get("event", "")
        refusal = self._refusal(request, event)
        if refusal is not None:
            return refusal
        if event not in CHIRPSTACK_STORED_EVENTS:
            return HttpResponse(status=204)
        try:
            payload = json.loads(request.body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _problem(400, _("The body is not valid JSON."))
        key = payload.get("deduplicationId") if isinstance(payload, dict) else None
        if not isinstance(key, str) or not key:
            return _problem(400, _("The event has no deduplicationId."))
        stored = inbound_store(
            source=ImportBatch.Source.CHIRPSTACK,
            messages=[(event, key, payload)],
            received_at=timezone.now(),
        )
        return HttpResponse(status=202 if stored else 200)

    def _refusal(self, request: HttpRequest, event: str) -> HttpResponse | None:
        token = settings.CHIRPSTACK_INTEGRATION_TOKEN
        if not token:
            raise Http404
        scheme, _sep, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not constant_time_compare(presented.strip(), token):
            response = _problem(401, _("A valid bearer token is required."))
            response["WWW-Authenticate"] = "Bearer"
            return response
        # Counted after the token check, so that strangers cannot spend the integration's
        # allowance; one key for the integration, whichever device the event is from.
        window = self.rate_window_seconds
        if rate_limited(
            "chirpstack", limit=settings.CHIRPSTACK_RATE_PER_MINUTE, window_seconds=window
        ):
            response = _problem(429, _("Too many events; retry later."))
            response["Retry-After"] = str(window)
            return response
        if event not in CHIRPSTACK_KNOWN_EVENTS:
            return _problem(400, _("Unknown event type %(event)r.") % {"event": event})
        if request.content_type != "application/json":
            return _problem(415, _("Send JSON: set the integration's payload marshaler to JSON."))
        if int(request.headers.get("Content-Length") or 0) > CHIRPSTACK_MAX_BODY:
            return _problem(413, _("The event is larger than 256 KiB."))
        return None
