"""Machine endpoints of the meters app: head-end systems send readings with an API key.

POST /api/v1/readings/ takes the JSON bulk format (meters.ingest.formats.jsonbulk) as a JSON
document or as newline-delimited JSON, streams it to the batch's stored payload and answers
202 with the batch; the batch endpoints report progress, counts and row errors. Everything is
bound to the key's organisation: readings of meters outside its subtree are refused row by
row, batches of other organisations answer 404.
"""

from __future__ import annotations

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

from meters.exceptions import MeterError
from meters.models import ImportBatch
from meters.selectors import batch_for_organisations, batch_row_errors, batches_for_organisations
from meters.services import batch_create
from portal.tenancy.api.base import OrganisationKeyAPIView
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
    message = serializers.CharField()


class BatchOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.UUIDField(source="public_id")
    status = serializers.CharField()
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
    error = serializers.CharField()
    url = serializers.SerializerMethodField()

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
