"""The scoped base views every customer-facing HTML page subclasses.

The tenant comes from the URL. Non-members get 404 (the tenant's existence is not revealed; the
probe is audited, on the tenant's log too when it exists), members whose role lacks the view's
scope get 403 (and the denial is audited). `setup`,
`dispatch` and `get_queryset` are sealed: a subclass, or a mixin placed before the base class,
that defines them is refused when the class is created (see portal.tenancy.scoping).

Every page renders in its tenant's time zone (the account's, or the organisation's), activated
here once for the whole response, so templates write `{{ when|date:"..." }}` and never convert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.template.response import SimpleTemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.generic.base import ContextMixin, TemplateResponseMixin, View

from portal.audit.actors import UserActor
from portal.tenancy.authorise import (
    MfaMissing,
    NotSignedIn,
    ScopeMissing,
    TenantHidden,
    authorise,
)
from portal.tenancy.models import Account, Organisation
from portal.tenancy.scoping import (
    AccountTenantMixin,
    OrganisationTenantMixin,
    SealedScopedMixin,
    withheld_headers,
)
from portal.tenancy.selectors import (
    AccountAccess,
    OrganisationAccess,
    TenantAccess,
    account_ancestors,
    organisation_ancestors,
    organisations_reached,
)
from portal.users.models import User


@dataclass(frozen=True)
class Breadcrumb:
    """An organisation above the page, linked only if the reader may open its page."""

    name: str
    url: str | None


class _ScopedView(SealedScopedMixin, TemplateResponseMixin, ContextMixin, View):
    _sealing_base = True
    abstract = True
    sealed_methods: ClassVar[tuple[str, ...]] = (
        "setup",
        "dispatch",
        "get_queryset",
        "as_view",
        "scope_for",
        "_resolve",
    )

    request: HttpRequest
    user: User
    access: TenantAccess
    # Organisations beneath the page that the reader may not see without a second factor.
    withheld: list[Organisation]

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return super().as_view(**initkwargs)

    def setup(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        super().setup(request, *args, **kwargs)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            granted = authorise(
                request=request,
                kwargs=kwargs,
                resolve=self._resolve,
                scope=self.scope_for(request.method or "GET"),
            )
        except NotSignedIn:
            return redirect_to_login(request.get_full_path())
        except TenantHidden:
            raise Http404 from None
        except ScopeMissing:
            raise PermissionDenied from None
        except MfaMissing as refusal:
            messages.warning(request, refusal.message)
            return redirect("mfa_index")
        self.user, self.access, self.withheld = granted.user, granted.access, granted.withheld
        with timezone.override(granted.time_zone):
            response = super().dispatch(request, *args, **kwargs)
            # A TemplateResponse would otherwise be rendered after this returns, in the
            # site's zone: render it while the tenant's is active.
            if isinstance(response, SimpleTemplateResponse):
                response.render()
        # The page's banner says it too; a CSV has only its headers to say what it leaves out.
        for name, value in withheld_headers(self.withheld).items():
            response[name] = value
        return response

    def get_queryset(self) -> QuerySet[Any]:
        """Return the subclass's queryset for the resolved tenant; never an unscoped one."""
        return self.get_scoped_queryset()

    def get_scoped_queryset(self) -> QuerySet[Any]:
        raise ImproperlyConfigured(f"{type(self).__qualname__} must define get_scoped_queryset")

    def actor(self) -> UserActor:
        """Return the audit actor for this request."""
        return UserActor.from_request(self.request)

    def _resolve(self, user: User, kwargs: Mapping[str, Any]) -> TenantAccess:
        raise NotImplementedError

    def breadcrumbs(self, organisations: list[Organisation]) -> list[Breadcrumb]:
        """The organisations above the page, root first. A viewer of a subsidiary sees the group
        above it by name, but only what one of their memberships reaches is a link (the group's
        page would answer 404 to them)."""
        if not organisations:
            return []
        if self.access.membership.organisation_id == organisations[0].pk:
            reached = {o.pk for o in organisations}  # held at the root: no need to ask
        else:
            reached = organisations_reached(user=self.user, organisations=organisations)
        return [
            Breadcrumb(
                name=o.name,
                url=reverse("tenancy:organisation_home", kwargs={"org_id": o.public_id})
                if o.pk in reached
                else None,
            )
            for o in organisations
        ]


class AccountView(AccountTenantMixin, _ScopedView):
    """Base for every page under /a/<account_id>/."""

    _sealing_base = True
    abstract = True
    access: AccountAccess

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            account=self.account,
            access=self.access,
            scopes={str(s) for s in self.access.scopes},
            breadcrumbs=self.breadcrumbs(account_ancestors(account=self.account)),
        )
        return context


class OrganisationView(OrganisationTenantMixin, _ScopedView):
    """Base for every page under /o/<org_id>/."""

    _sealing_base = True
    abstract = True
    access: OrganisationAccess

    @property
    def withheld_paths(self) -> tuple[str, ...]:
        """The paths every subtree read of this page leaves out (see `mfa_withheld`)."""
        return tuple(organisation.path for organisation in self.withheld)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            organisation=self.organisation,
            access=self.access,
            scopes={str(s) for s in self.access.scopes},
            breadcrumbs=self.breadcrumbs(organisation_ancestors(organisation=self.organisation)),
            withheld_organisations=self.withheld,
        )
        return context


class SignedInView(TemplateResponseMixin, ContextMixin, View):
    """Base for the few pages that belong to the signed-in person, not to a tenant.

    They show only the person's own data (the landing page); each is on the reviewed public
    allowlist of the URLconf walk.
    """

    request: HttpRequest
    user: User

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        if not isinstance(user, User) or not user.is_active:
            return redirect_to_login(request.get_full_path())
        self.user = user
        return super().dispatch(request, *args, **kwargs)


def model_url(instance: Model) -> str:
    """Return the portal page of an account or organisation."""
    if isinstance(instance, Account):
        return reverse("tenancy:account_home", kwargs={"account_id": instance.public_id})
    if isinstance(instance, Organisation):
        return reverse("tenancy:organisation_home", kwargs={"org_id": instance.public_id})
    raise TypeError(type(instance))
