"""API keys bound to an organisation, presented as `Authorization: Api-Key <key>`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from portal.tenancy.selectors import ApiKeyAccess, api_key_access
from portal.tenancy.services.api_keys import api_key_used

KEYWORD = "Api-Key"


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticate a machine: `request.auth` becomes its ApiKeyAccess, `request.user` stays
    anonymous (a key is nobody's session and carries no person's roles)."""

    def authenticate(self, request: Request) -> tuple[AnonymousUser, ApiKeyAccess] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None
        if len(parts) != 2:
            raise AuthenticationFailed(_("Give the key as: Authorization: Api-Key <key>."))
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed(_("Unknown, revoked or expired API key.")) from None
        now = timezone.now()
        access = api_key_access(key=key, as_of=now)
        if access is None:
            raise AuthenticationFailed(_("Unknown, revoked or expired API key."))
        api_key_used(api_key=access.api_key, as_of=now)
        return AnonymousUser(), access

    def authenticate_header(self, request: Any) -> str:
        return KEYWORD


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Describes the key header in the OpenAPI schema."""

    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`: a key an organisation's manager created.",
        }
