"""Tenancy endpoints: who am I, account and organisation details, members."""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.tenancy.api.base import AccountAPIView, OrganisationAPIView
from portal.tenancy.roles import Role
from portal.tenancy.scopes import Scope
from portal.tenancy.selectors import (
    account_members,
    accounts_in_subtree,
    organisation_children,
    organisation_members,
    tenants_visible_to,
)
from portal.users.models import User


@extend_schema_field({"type": "string", "enum": [role.api_name for role in Role]})
class _RoleField(serializers.Field):  # type: ignore[type-arg]
    def to_representation(self, value: int) -> str:
        return Role(value).api_name


class AccountOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.UUIDField(source="public_id")
    number = serializers.CharField()
    name = serializers.CharField()
    payment_mode = serializers.CharField()
    currency = serializers.CharField()
    time_zone = serializers.CharField()
    organisation_id = serializers.UUIDField(source="organisation.public_id", allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)


class MembershipOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.UUIDField(source="public_id")
    email = serializers.EmailField(source="user.email")
    name = serializers.CharField(source="user.name")
    role = _RoleField()
    since = serializers.DateTimeField(source="created_at")


class MeApi(APIView):
    """The signed-in person and the tenants they hold directly."""

    permission_classes = [IsAuthenticated]

    class MeOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        email = serializers.EmailField()
        name = serializers.CharField()
        organisations = serializers.ListField(child=serializers.DictField())
        accounts = serializers.ListField(child=serializers.DictField())

    @extend_schema(responses=MeOutputSerializer)
    def get(self, request: Request) -> Response:
        user = cast(User, request.user)  # IsAuthenticated let only signed-in users through
        tenants = tenants_visible_to(user=user)
        data = {
            "email": user.email,
            "name": user.name,
            "organisations": [
                {
                    "id": str(item.organisation.public_id),
                    "name": item.organisation.name,
                    "role": item.role.api_name,
                    "scopes": sorted(item.scopes),
                    "accounts": item.account_count,
                }
                for item in tenants.organisations
            ],
            "accounts": [
                {
                    "id": str(item.account.public_id),
                    "number": item.account.number,
                    "name": item.account.name,
                    "role": item.role.api_name,
                    "scopes": sorted(item.scopes),
                }
                for item in tenants.accounts
            ],
        }
        return Response(self.MeOutputSerializer(data).data)


class AccountDetailApi(AccountAPIView):
    """One account, with the caller's role and scopes on it."""

    required_scope = Scope.METERS_READ

    class AccountDetailOutputSerializer(AccountOutputSerializer):
        role = serializers.CharField()
        scopes = serializers.ListField(child=serializers.CharField())

    @extend_schema(responses=AccountDetailOutputSerializer)
    def get(self, request: Request, account_id: Any) -> Response:
        payload = AccountOutputSerializer(self.account).data
        payload["role"] = self.access.role.api_name
        payload["scopes"] = sorted(str(s) for s in self.access.scopes)
        return Response(payload)


class AccountMemberListApi(AccountAPIView):
    """The account's direct members."""

    required_scope = Scope.MEMBERS_MANAGE

    @extend_schema(responses=MembershipOutputSerializer(many=True))
    def get(self, request: Request, account_id: Any) -> Response:
        members = account_members(account=self.account)
        return Response(MembershipOutputSerializer(members, many=True).data)


class OrganisationDetailApi(OrganisationAPIView):
    """One organisation with its direct subsidiaries."""

    required_scope = Scope.METERS_READ

    class OrganisationDetailOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        id = serializers.UUIDField(source="public_id")
        name = serializers.CharField()
        parent_id = serializers.UUIDField(source="parent.public_id", allow_null=True)
        require_mfa = serializers.BooleanField()
        subsidiaries = serializers.ListField(child=serializers.DictField())
        role = serializers.CharField()

    @extend_schema(responses=OrganisationDetailOutputSerializer)
    def get(self, request: Request, org_id: Any) -> Response:
        org = self.organisation
        data = {
            "public_id": org.public_id,
            "name": org.name,
            "parent": org.parent,
            "require_mfa": org.require_mfa,
            "subsidiaries": [
                {"id": str(child.public_id), "name": child.name, "accounts": child.account_count}  # type: ignore[attr-defined]
                for child in organisation_children(organisation=org)
                if not child.path.startswith(self.withheld_paths)
            ],
            "role": self.access.role.api_name,
        }
        return Response(self.OrganisationDetailOutputSerializer(data).data)


class _AccountCursor(CursorPagination):
    ordering = "number"
    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"


class OrganisationAccountListApi(OrganisationAPIView):
    """Accounts of the organisation and of every subsidiary beneath it, by number."""

    required_scope = Scope.METERS_READ
    pagination_class = _AccountCursor

    def get_scoped_queryset(self) -> Any:
        return accounts_in_subtree(organisation=self.organisation, withheld=self.withheld_paths)

    @extend_schema(responses=AccountOutputSerializer(many=True))
    def get(self, request: Request, org_id: Any) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(self.get_queryset(), request, view=self)
        return paginator.get_paginated_response(AccountOutputSerializer(page, many=True).data)


class OrganisationMemberListApi(OrganisationAPIView):
    """The organisation's direct members."""

    required_scope = Scope.MEMBERS_MANAGE

    @extend_schema(responses=MembershipOutputSerializer(many=True))
    def get(self, request: Request, org_id: Any) -> Response:
        members: Any = organisation_members(organisation=self.organisation)
        return Response(MembershipOutputSerializer(members, many=True).data)
