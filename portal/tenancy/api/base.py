"""DRF counterparts of AccountView and OrganisationView, and the base of machine endpoints.

The tenant is resolved in `initial()`, after DRF has authenticated the request: 404 for
non-members, 403 for members lacking the scope, each audited. `setup`, `dispatch`, `initial`,
`get_permissions`, `check_permissions` and `get_queryset` are sealed.

Machine endpoints (OrganisationKeyAPIView) take their tenant from the API key, never from the
URL: a key reaches its organisation's subtree and nothing else; a key without the endpoint's
scope gets 403, audited.

Once the tenant is known its time zone is active until the response is made, so serializers
write times in it (with their offset), as the HTML pages do.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from typing import Any, ClassVar

from django.db.models import QuerySet
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import NotAuthenticated, NotFound, PermissionDenied
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.audit.actors import ApiKeyActor, RequestContext, UserActor
from portal.tenancy.api.authentication import ApiKeyAuthentication
from portal.tenancy.authorise import (
    MfaMissing,
    NotSignedIn,
    ScopeMissing,
    TenantHidden,
    authorise,
)
from portal.tenancy.models import Organisation
from portal.tenancy.scoping import (
    AccountTenantMixin,
    OrganisationTenantMixin,
    SealedScopedMixin,
    record_key_denial,
    withheld_headers,
)
from portal.tenancy.selectors import (
    AccountAccess,
    ApiKeyAccess,
    OrganisationAccess,
    TenantAccess,
    organisation_subtree_ids,
)
from portal.users.models import User


class _TenantTimeZone:
    """Keep the tenant's zone active from `initial()` to the end of `dispatch()`."""

    _zone_override: timezone.override | None = None

    def _activate_time_zone(self, zone: zoneinfo.ZoneInfo) -> None:
        self._zone_override = timezone.override(zone)
        self._zone_override.__enter__()

    def _deactivate_time_zone(self) -> None:
        if self._zone_override is not None:
            self._zone_override.__exit__(None, None, None)
            self._zone_override = None


class _ScopedAPIView(_TenantTimeZone, SealedScopedMixin, APIView):
    _sealing_base = True
    abstract = True
    sealed_methods: ClassVar[tuple[str, ...]] = (
        "setup",
        "dispatch",
        "initial",
        "finalize_response",
        "get_permissions",
        "check_permissions",
        "get_queryset",
        "as_view",
        "scope_for",
        "_resolve",
    )

    user: User
    access: TenantAccess
    # Organisations beneath the tenant that the caller may not see without a second factor.
    withheld: list[Organisation]

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return super().as_view(**initkwargs)

    def setup(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().setup(request, *args, **kwargs)

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            self._deactivate_time_zone()

    def get_permissions(self) -> list[BasePermission]:
        return [IsAuthenticated()]

    def check_permissions(self, request: Request) -> None:
        super().check_permissions(request)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        try:
            granted = authorise(
                request=request._request,
                kwargs=kwargs,
                resolve=self._resolve,
                scope=self.scope_for(request.method or "GET"),
            )
        except (NotSignedIn, TenantHidden):
            raise NotFound from None
        except ScopeMissing:
            raise PermissionDenied from None
        except MfaMissing as refusal:
            raise PermissionDenied(refusal.message) from None
        self.user, self.access, self.withheld = granted.user, granted.access, granted.withheld
        self._activate_time_zone(granted.time_zone)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        # Said in a header, so that every answer over a subtree says what it leaves out.
        for name, value in withheld_headers(getattr(self, "withheld", [])).items():
            response[name] = value
        return response

    def get_queryset(self) -> QuerySet[Any]:
        return self.get_scoped_queryset()

    def get_scoped_queryset(self) -> QuerySet[Any]:
        raise NotImplementedError(f"{type(self).__qualname__} must define get_scoped_queryset")

    def actor(self) -> UserActor:
        return UserActor.from_request(self.request._request)

    def _resolve(self, user: User, kwargs: Mapping[str, Any]) -> TenantAccess:
        raise NotImplementedError


class AccountAPIView(AccountTenantMixin, _ScopedAPIView):
    """Base for every endpoint under /api/v1/accounts/<account_id>/."""

    _sealing_base = True
    abstract = True
    access: AccountAccess


class OrganisationAPIView(OrganisationTenantMixin, _ScopedAPIView):
    """Base for every endpoint under /api/v1/organisations/<org_id>/."""

    _sealing_base = True
    abstract = True
    access: OrganisationAccess

    @property
    def withheld_paths(self) -> tuple[str, ...]:
        """The paths every subtree read of this endpoint leaves out (see `mfa_withheld`)."""
        return tuple(organisation.path for organisation in self.withheld)


class OrganisationKeyAPIView(_TenantTimeZone, SealedScopedMixin, APIView):
    """Base for machine endpoints authenticated by an organisation's API key.

    Only the API key authenticates here (no session, so no browser can be made to call it);
    the scope is checked against the key's fixed scopes. `get_authenticators` is sealed with
    the others so that a subclass cannot let another credential in.
    """

    _sealing_base = True
    abstract = True
    sealed_methods: ClassVar[tuple[str, ...]] = (
        "setup",
        "dispatch",
        "initial",
        "get_authenticators",
        "get_permissions",
        "check_permissions",
        "get_queryset",
        "as_view",
        "scope_for",
    )

    access: ApiKeyAccess
    organisation: Organisation

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return super().as_view(**initkwargs)

    def setup(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().setup(request, *args, **kwargs)

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            self._deactivate_time_zone()

    def get_authenticators(self) -> list[BaseAuthentication]:
        return [ApiKeyAuthentication()]

    def get_permissions(self) -> list[BasePermission]:
        return []

    def check_permissions(self, request: Request) -> None:
        super().check_permissions(request)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        access = request.auth
        if not isinstance(access, ApiKeyAccess):
            raise NotAuthenticated
        self.access = access
        self.organisation = access.organisation
        scope = self.scope_for(request.method or "GET")
        if not access.has_scope(scope):
            record_key_denial(
                actor=self.actor(), organisation=self.organisation, scope=scope, path=request.path
            )
            raise PermissionDenied
        self._activate_time_zone(zoneinfo.ZoneInfo(self.organisation.time_zone))

    def get_queryset(self) -> QuerySet[Any]:
        return self.get_scoped_queryset()

    def get_scoped_queryset(self) -> QuerySet[Any]:
        raise NotImplementedError(f"{type(self).__qualname__} must define get_scoped_queryset")

    def subtree_ids(self) -> list[int]:
        """The organisations whose objects this key reaches: its own and its subsidiaries."""
        return organisation_subtree_ids(organisation=self.organisation)

    def actor(self) -> ApiKeyActor:
        return ApiKeyActor(
            key_prefix=self.access.api_key.prefix,
            organisation_name=self.organisation.name,
            context=RequestContext.from_request(self.request._request),
        )
