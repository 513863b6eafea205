"""Top-ups over the REST API: /api/v1/accounts/<account_id>/topups/.

POST needs the `Idempotency-Key` header (1-120 characters, e.g. a UUID made by the client for
this top-up): a retry with the same key returns the first top-up (200) instead of starting
another one (201); the same key with another amount is refused (422). The answer carries
`checkout_url`, where the payer completes the payment.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from billing.models import TopUp
from billing.payments.selectors import topup_for_account, topups_for_account
from billing.selectors import wallet_for_account
from billing.services.topups import (
    IdempotencyKeyReused,
    TopUpError,
    topup_check,
    topup_checkout_start,
    topup_create,
)
from portal.lib.money import AmountError, from_minor, parse_amount, to_minor
from portal.tenancy.api.base import AccountAPIView
from portal.tenancy.scopes import Scope


class TopUpOutputSerializer(serializers.Serializer[TopUp]):
    id = serializers.UUIDField(source="public_id")
    status = serializers.CharField()
    amount = serializers.SerializerMethodField()
    amount_minor = serializers.IntegerField(source="amount")
    currency = serializers.CharField()
    provider = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_amount(self, topup: TopUp) -> str:
        return str(from_minor(topup.amount, topup.currency))


class TopUpCreatedSerializer(TopUpOutputSerializer):
    checkout_url = serializers.SerializerMethodField()

    def get_checkout_url(self, topup: TopUp) -> str | None:
        url = self.context.get("checkout_url")
        return str(url) if url else None


class TopUpInputSerializer(serializers.Serializer[Any]):
    amount = serializers.DecimalField(
        max_digits=18, decimal_places=6, help_text="In major units of the wallet's currency."
    )

    def __init__(self, *args: Any, currency: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # parse_amount is the rule; the DecimalField above only describes the field in the
        # schema. A JSON number is taken as written (str() of a float is its shortest form).
        given = data.get("amount") if isinstance(data, dict) else None
        if given is None or given == "":
            raise ValidationError({"amount": [_("This field is required.")]})
        if isinstance(given, bool | dict | list):  # JSON numbers and strings only
            raise ValidationError({"amount": [_("Enter a number.")]})
        try:
            return {"amount": parse_amount(str(given), self.currency)}
        except AmountError as error:
            raise ValidationError({"amount": [str(error)]}) from None


class TopUpListApi(AccountAPIView):
    """The account's top-ups (newest first), and starting a new one."""

    required_scope = Scope.BILLING_READ
    method_scopes = {"POST": Scope.BILLING_TOPUP}

    @extend_schema(responses=TopUpOutputSerializer(many=True))
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        topups = topups_for_account(account_id=self.account.pk)[:100]
        return Response(TopUpOutputSerializer(list(topups), many=True).data)  # type: ignore[arg-type]

    @extend_schema(
        request=TopUpInputSerializer,
        responses={201: TopUpCreatedSerializer, 200: TopUpCreatedSerializer},
        parameters=[
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=True)
        ],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            raise ValidationError({"Idempotency-Key": [_("This header is required.")]})
        wallet = wallet_for_account(account_id=self.account.pk)
        if wallet is None:
            raise ValidationError({"amount": [_("This account has no prepaid wallet.")]})
        given = TopUpInputSerializer(data=request.data, currency=wallet.currency)
        given.is_valid(raise_exception=True)
        minor = to_minor(given.validated_data["amount"], wallet.currency)
        now = timezone.now()
        try:
            topup, new = topup_create(
                account=self.account,
                amount=minor,
                idempotency_key=key,
                actor=self.actor(),
                as_of=now,
            )
            topup, checkout_url = topup_checkout_start(topup=topup, actor=self.actor(), as_of=now)
        except IdempotencyKeyReused as error:
            return Response({"detail": str(error.message)}, status=422)
        except TopUpError as error:
            raise ValidationError({"amount": [str(error.message)]}) from None
        data = TopUpCreatedSerializer(topup, context={"checkout_url": checkout_url}).data
        if data.get("checkout_url"):
            data["checkout_url"] = request.build_absolute_uri(data["checkout_url"])
        return Response(data, status=status.HTTP_201_CREATED if new else status.HTTP_200_OK)


class TopUpDetailApi(AccountAPIView):
    """One top-up of the account; POST asks the provider again about an open one."""

    required_scope = Scope.BILLING_READ
    method_scopes = {"POST": Scope.BILLING_TOPUP}

    @extend_schema(
        operation_id="accounts_topups_check", request=None, responses=TopUpOutputSerializer
    )
    def post(self, request: Request, *args: Any, topup_id: uuid.UUID, **kwargs: Any) -> Response:
        topup = topup_for_account(account_id=self.account.pk, public_id=topup_id)
        if topup is None:
            raise NotFound
        topup = topup_check(topup=topup, actor=self.actor(), as_of=timezone.now())
        return Response(TopUpOutputSerializer(topup).data)

    @extend_schema(responses=TopUpOutputSerializer)
    def get(self, request: Request, *args: Any, topup_id: uuid.UUID, **kwargs: Any) -> Response:
        topup = topup_for_account(account_id=self.account.pk, public_id=topup_id)
        if topup is None:
            raise NotFound
        return Response(TopUpOutputSerializer(topup).data)
