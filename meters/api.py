"""The meters app's API: consumption for members, readings from head-end systems.

GET /api/v1/accounts/<account_id>/consumption/ answers the account's consumption per period,
service point and direction, from the rollups only (never the raw readings), within the
account's own supply periods; pages follow each other by cursor.

Machine endpoints: head-end systems send readings with an API key. POST /api/v1/readings/
takes the JSON bulk format (meters.ingest.formats.jsonbulk) as a JSON document or as
newline-delimited JSON, streams it to the batch's stored payload and answers 202 with the
batch; the batch endpoints report progress, counts and row errors. Everything is bound to the
key's organisation: readings of meters outside its subtree are refused row by row, batches of
other organisations answer 404.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import uuid
import zoneinfo
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ParseError, UnsupportedMediaType
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from meters.exceptions import MeterError
from meters.models import Direction, ImportBatch, UtilityKind
from meters.periods import GroupBy
from meters.selectors.buckets import BucketKey, ConsumptionBucket, consumption_buckets
from meters.selectors.imports import (
    batch_for_organisations,
    batch_row_errors,
    batches_for_organisations,
)
from meters.services.imports import batch_create
from portal.lib.periods import local_midnight
from portal.tenancy.api.base import AccountAPIView, OrganisationKeyAPIView
from portal.tenancy.api.throttles import ApiKeyRateThrottle
from portal.tenancy.scopes import Scope

BULK_MEDIA_TYPES = ("application/json", "application/x-ndjson")


class _PayloadTooLarge(MeterError):
    pass


class _LimitedStream:
    """The request body, read in chunks, refused as soon as it passes the upload limit (a
    chunked request has no Content-Length to check beforehand)."""

    def __init__(self, stream: Any, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.read_bytes = 0
        # Read ahead once, so that an empty body is refused before a batch is made of it.
        self.head: bytes = self._read(64 * 1024)

    def _read(self, size: int) -> bytes:
        chunk: bytes = self.stream.read(size)
        self.read_bytes += len(chunk)
        if self.read_bytes > self.limit:
            raise _PayloadTooLarge(_("The body is larger than the upload limit."))
        return chunk

    def read(self, size: int = -1) -> bytes:
        if self.head:
            head, self.head = self.head, b""
            return head
        return self._read(size)


class _RawBodyParser(BaseParser):
    """Declares the accepted media types for the schema; the view streams the body itself."""

    media_type = "application/json"


class RowErrorSerializer(serializers.Serializer):  # type: ignore[type-arg]
    line = serializers.IntegerField()
    code = serializers.CharField(help_text="A stable name of the problem.")
    params = serializers.DictField(help_text="The facts the message is made from.")
    message = serializers.CharField(source="text", help_text="In the request's language.")


BATCH_STATES = (
    "queued: waiting for a worker, or for its next attempt after an unexpected error "
    "(next_attempt_at); running: being imported. Final: done (every row accepted: inserted, "
    "already stored or conflicting with a stored value); done_with_rejections (some rows "
    "rejected, see row_errors; the others imported); rejected (every row rejected, or no data "
    "rows: nothing imported, error says which); failed (a file-level error, or an unexpected "
    "error in each of its attempts: error says what, error_class names the exception; the "
    "same body sent again is imported again); duplicate (the same body as an earlier batch: "
    "nothing imported, outcome is how that batch ended)."
)


class BatchOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.UUIDField(source="public_id")
    status = serializers.ChoiceField(choices=ImportBatch.Status.values, help_text=BATCH_STATES)
    outcome = serializers.SerializerMethodField(
        help_text="The final state that counts: for a duplicate, the state of the batch it "
        "repeats (null while that one is not finished); otherwise status once final."
    )
    stage = serializers.CharField()
    progress = serializers.IntegerField()
    format = serializers.CharField()
    # A field named like Field.source: DRF reads it from the attribute all the same.
    source = serializers.CharField()  # type: ignore[assignment]
    file_name = serializers.CharField(source="original_name")
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    received_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duplicate_of = serializers.UUIDField(source="duplicate_of.public_id", allow_null=True)
    seen = serializers.IntegerField()
    inserted = serializers.IntegerField()
    duplicate = serializers.IntegerField()
    conflicting = serializers.IntegerField()
    rejected = serializers.IntegerField()
    estimated = serializers.IntegerField()
    row_error_count = serializers.IntegerField()
    error = serializers.CharField(
        help_text="Why the batch failed or was rejected (English); empty otherwise. While it "
        "waits for another attempt: the error of the last one."
    )
    error_class = serializers.CharField(
        help_text="For an unexpected error: the exception's class, e.g. "
        "psycopg.errors.NumericValueOutOfRange; empty for file-level errors."
    )
    attempts = serializers.IntegerField(help_text="How many times a worker started the batch.")
    next_attempt_at = serializers.DateTimeField(
        allow_null=True, help_text="When the batch is tried again after an unexpected error."
    )
    url = serializers.SerializerMethodField()

    def get_outcome(self, batch: ImportBatch) -> str | None:
        final = batch.duplicate_of if batch.status == ImportBatch.Status.DUPLICATE else batch
        if final is None:
            return None
        return final.status if final.finished else None

    def get_url(self, batch: ImportBatch) -> str:
        return reverse("meters:api_batch_detail", kwargs={"batch_id": batch.public_id})


class BatchDetailOutputSerializer(BatchOutputSerializer):
    row_errors = RowErrorSerializer(many=True, help_text="The first 100 row errors, by line.")


class _BatchPagination(CursorPagination):
    ordering = "-created_at"
    page_size = 50


class ReadingsBulkApi(OrganisationKeyAPIView):
    """Send readings for the organisation's meters (JSON bulk format, at most the upload
    limit per request). The same body sent again is recognised and imports nothing."""

    required_scope = Scope.METERS_READ
    method_scopes = {"POST": Scope.METERS_IMPORT}
    parser_classes = [_RawBodyParser]
    throttle_classes = [ApiKeyRateThrottle]

    @extend_schema(
        request={media: {"type": "object"} for media in BULK_MEDIA_TYPES},
        responses={202: BatchOutputSerializer, 200: BatchOutputSerializer},
        examples=[
            OpenApiExample(
                "Two readings",
                request_only=True,
                value={
                    "readings": [
                        {
                            "meter": "E1001",
                            "timestamp": "2026-03-01T00:15:00Z",
                            "value": 1234.5,
                            "unit": "kWh",
                        },
                        {
                            "meter": "W2001",
                            "timestamp": "2026-03-01T00:15:00Z",
                            "delta": 12.5,
                            "unit": "L",
                            "flags": ["leak"],
                        },
                    ]
                },
            )
        ],
    )
    def post(self, request: Request) -> Response:
        media = (request.content_type or "").split(";")[0].strip().lower()
        if media not in BULK_MEDIA_TYPES:
            raise UnsupportedMediaType(media or "none")
        declared = int(request.headers.get("Content-Length") or 0)
        limit = settings.PORTAL_IMPORT_MAX_UPLOAD
        if declared > limit:
            return Response(
                {"detail": _("The body is larger than the upload limit.")},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        try:
            body = _LimitedStream(request._request, limit)
            if not body.head:
                raise ParseError(_("The body is empty."))
            batch = batch_create(
                source=ImportBatch.Source.API,
                fmt=ImportBatch.Format.JSON,
                content=body,
                original_name=request.headers.get("X-File-Name", "api.json")[:255],
                organisation=self.organisation,
                actor=self.actor(),
                as_of=timezone.now(),
            )
        except _PayloadTooLarge as error:
            return Response(
                {"detail": str(error.message)}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
            )
        except MeterError as error:
            raise ParseError(str(error.message)) from None
        code = (
            status.HTTP_200_OK
            if batch.status == ImportBatch.Status.DUPLICATE
            else status.HTTP_202_ACCEPTED
        )
        data = BatchOutputSerializer(batch).data
        return Response(data, status=code, headers={"Location": data["url"]})


class BatchListApi(OrganisationKeyAPIView):
    """The organisation's import batches (its subsidiaries' included), newest first."""

    required_scope = Scope.METERS_READ
    throttle_classes = [ApiKeyRateThrottle]

    def get_scoped_queryset(self) -> QuerySet[ImportBatch]:
        return batches_for_organisations(organisation_ids=self.subtree_ids()).select_related(
            "duplicate_of"
        )

    @extend_schema(responses=BatchOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        paginator = _BatchPagination()
        page = paginator.paginate_queryset(self.get_queryset(), request, view=self)
        return paginator.get_paginated_response(BatchOutputSerializer(page, many=True).data)


class BatchDetailApi(OrganisationKeyAPIView):
    """One batch: status, counts and the first row errors."""

    required_scope = Scope.METERS_READ
    throttle_classes = [ApiKeyRateThrottle]

    @extend_schema(responses=BatchDetailOutputSerializer)
    def get(self, request: Request, batch_id: Any) -> Response:
        batch = batch_for_organisations(public_id=batch_id, organisation_ids=self.subtree_ids())
        if batch is None:
            raise NotFound
        data = dict(BatchOutputSerializer(batch).data)
        data["row_errors"] = RowErrorSerializer(
            batch_row_errors(batch=batch, limit=100), many=True
        ).data
        return Response(data)


# --- Consumption ----------------------------------------------------------------------------

DEFAULT_RANGE = dt.timedelta(days=30)
# Hourly rows of a longer range belong in a data export, not in pages of JSON.
MAX_HOUR_RANGE = dt.timedelta(days=93)
PAGE_SIZE = 500
MAX_PAGE_SIZE = 5000
_EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
# "+08:00" typed into a query string unencoded arrives as " 08:00".
_SPACE_FOR_PLUS = re.compile(r" (\d{2}(:?\d{2})?)$")


def _moment(value: str, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """Read an ISO date (local midnight) or date and time (local when it has no offset)."""
    text = _SPACE_FOR_PLUS.sub(r"+\1", value.strip())
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            # A day far outside the range has no midnight in UTC (year 1 overflows): refuse it
            # by its date first; the moment's own check below still applies to the rest.
            if not _EARLIEST.date() <= day < _LATEST.date():
                raise serializers.ValidationError(_("Enter a time between 1970 and 2100."))
            moment = local_midnight(day, zone).astimezone(zone)
        else:
            moment = dt.datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
    except ValueError:
        raise serializers.ValidationError(
            _("Enter a date (2026-05-01) or a date and time (2026-05-01T06:00:00+08:00).")
        ) from None
    if not _EARLIEST <= moment < _LATEST:
        raise serializers.ValidationError(_("Enter a time between 1970 and 2100."))
    return moment.astimezone(zone)


def _encode_cursor(key: BucketKey) -> str:
    raw = json.dumps([key.period_start.isoformat(), key.service_point_code, key.direction])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(value: str) -> BucketKey:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        period, code, direction = json.loads(raw)
        moment = dt.datetime.fromisoformat(period)
        if moment.tzinfo is None or not isinstance(code, str):
            raise ValueError(period)
        if direction not in Direction.values:
            raise ValueError(direction)
    except (binascii.Error, UnicodeDecodeError, TypeError, ValueError):
        raise serializers.ValidationError(
            _("This cursor is not valid: start again from the first page.")
        ) from None
    return BucketKey(period_start=moment, service_point_code=code, direction=direction)


class ConsumptionInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    period_from = serializers.CharField(
        required=False,
        help_text="Start of the range (inclusive): an ISO date or date and time; without an "
        "offset it is read in the account's time zone. Default: period_to less 30 days.",
    )
    period_to = serializers.CharField(
        required=False,
        help_text="End of the range (exclusive), like period_from. Default: the end of today "
        "in the account's time zone.",
    )
    group_by = serializers.ChoiceField(
        choices=[g.value for g in GroupBy],
        default=GroupBy.DAY.value,
        help_text="hour: UTC hours from the hourly rollups (ranges up to 93 days); day, week "
        "(from Monday) and month: local days of the account's time zone, whole days only.",
    )
    utility = serializers.ChoiceField(choices=UtilityKind.choices, required=False)
    direction = serializers.ChoiceField(
        choices=Direction.choices,
        required=False,
        help_text="import (consumption) or export (generation); both by default.",
    )
    page_size = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, default=PAGE_SIZE)
    cursor = serializers.CharField(
        required=False, help_text="The `next` link's cursor, for the following page."
    )

    def validate_period_from(self, value: str) -> dt.datetime:
        return _moment(value, self.context["zone"])

    def validate_period_to(self, value: str) -> dt.datetime:
        return _moment(value, self.context["zone"])

    def validate_cursor(self, value: str) -> BucketKey:
        return _decode_cursor(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        zone: zoneinfo.ZoneInfo = self.context["zone"]
        end = attrs.get("period_to")
        if end is None:
            tomorrow = self.context["now"].astimezone(zone).date() + dt.timedelta(days=1)
            end = local_midnight(tomorrow, zone).astimezone(zone)
        start = attrs.get("period_from") or end - DEFAULT_RANGE
        if start >= end:
            raise serializers.ValidationError(
                {"period_to": [_("The end of the range must come after its start.")]}
            )
        if attrs["group_by"] == GroupBy.HOUR and end - start > MAX_HOUR_RANGE:
            raise serializers.ValidationError(
                {
                    "period_to": [
                        _("Hourly data is served for at most %(days)s days at a time.")
                        % {"days": MAX_HOUR_RANGE.days}
                    ]
                }
            )
        return {**attrs, "period_from": start, "period_to": end}


class ConsumptionPointSerializer(serializers.Serializer):  # type: ignore[type-arg]
    period_start = serializers.DateTimeField(
        help_text="Start of the period, with the offset of the account's time zone."
    )
    consumption = serializers.IntegerField(
        help_text="In the series' unit; suspect readings are left out until someone has "
        "looked at them."
    )
    estimated = serializers.IntegerField(help_text="The part of `consumption` that is estimated.")
    suspect_readings = serializers.IntegerField()
    hours_with_data = serializers.IntegerField()
    incomplete = serializers.BooleanField(
        help_text="Some hours of the period have no data (before a move-in, an ongoing period, "
        "a gap), or suspect readings were left out."
    )


class ConsumptionSeriesSerializer(serializers.Serializer):  # type: ignore[type-arg]
    service_point = serializers.UUIDField()
    service_point_code = serializers.CharField()
    utility = serializers.ChoiceField(choices=UtilityKind.choices)
    direction = serializers.ChoiceField(choices=Direction.choices)
    unit = serializers.ChoiceField(
        choices=["Wh", "L"], help_text="The meter's base unit: watt-hours or litres."
    )
    points = ConsumptionPointSerializer(many=True)


class ConsumptionPageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    next = serializers.URLField(
        allow_null=True, help_text="The following page; a series may go on there."
    )
    period_from = serializers.DateTimeField()
    period_to = serializers.DateTimeField()
    group_by = serializers.ChoiceField(choices=[g.value for g in GroupBy])
    time_zone = serializers.CharField()
    results = ConsumptionSeriesSerializer(
        many=True, help_text="One series per service point and direction with data on this page."
    )


def _series(buckets: list[ConsumptionBucket]) -> list[dict[str, Any]]:
    # Plain dicts: the serializers above document this shape; running them per point would be
    # most of the endpoint's time.
    series: dict[tuple[str, str], dict[str, Any]] = {}
    for bucket in buckets:
        key = (bucket.service_point_code, bucket.direction)
        if key not in series:
            series[key] = {
                "service_point": str(bucket.service_point_id),
                "service_point_code": bucket.service_point_code,
                "utility": bucket.utility,
                "direction": bucket.direction,
                "unit": bucket.unit,
                "points": [],
            }
        series[key]["points"].append(
            {
                "period_start": bucket.period_start.isoformat(),
                "consumption": bucket.consumption,
                "estimated": bucket.estimated,
                "suspect_readings": bucket.suspect,
                "hours_with_data": bucket.hours,
                "incomplete": bucket.incomplete,
            }
        )
    return [series[key] for key in sorted(series)]


class AccountConsumptionApi(AccountAPIView):
    """The account's consumption per service point and direction, period by period, in the
    meters' base units, only within the account's own supply periods. Periods without any data
    are left out; `incomplete` marks those with missing hours or suspect readings. A page holds
    `page_size` points, in order of period, service point code and direction."""

    required_scope = Scope.METERS_READ

    @extend_schema(
        parameters=[ConsumptionInputSerializer],
        responses={200: ConsumptionPageSerializer},
    )
    def get(self, request: Request, account_id: uuid.UUID) -> Response:
        zone = zoneinfo.ZoneInfo(self.account.time_zone)
        given = ConsumptionInputSerializer(
            data=request.query_params, context={"zone": zone, "now": timezone.now()}
        )
        given.is_valid(raise_exception=True)
        query = given.validated_data
        page_size: int = query["page_size"]
        buckets = consumption_buckets(
            account_id=self.account.pk,
            start=query["period_from"],
            end=query["period_to"],
            group_by=GroupBy(query["group_by"]),
            time_zone=self.account.time_zone,
            utility=query.get("utility"),
            direction=query.get("direction"),
            after=query.get("cursor"),
            limit=page_size + 1,
        )
        next_url = None
        if len(buckets) > page_size:
            buckets = buckets[:page_size]
            last = buckets[-1]
            key = BucketKey(last.period_start, last.service_point_code, last.direction)
            next_url = replace_query_param(
                request.build_absolute_uri(), "cursor", _encode_cursor(key)
            )
        return Response(
            {
                "next": next_url,
                "period_from": query["period_from"].isoformat(),
                "period_to": query["period_to"].isoformat(),
                "group_by": query["group_by"],
                "time_zone": self.account.time_zone,
                "results": _series(buckets),
            }
        )
