"""Walk the URLconf and classify every routed view (used by the structural tests)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver

from portal.tenancy.api.base import AccountAPIView, OrganisationAPIView, OrganisationKeyAPIView
from portal.tenancy.views.base import AccountView, OrganisationView

OUR_PACKAGES = ("portal.", "meters.", "billing.", "web.")
SCOPED_BASES: tuple[type, ...] = (
    AccountView,
    OrganisationView,
    AccountAPIView,
    OrganisationAPIView,
    OrganisationKeyAPIView,
)

# DO NOT ADD without review: each of these serves only the signed-in person's own data, or
# nothing tenant-specific at all.
PUBLIC_VIEWS = frozenset(
    {
        "portal.views.HealthView",  # database and cache up or down
        "web.views.home.HomeView",  # the person's own list of tenants
        "portal.tenancy.views.invitations.InvitationAcceptView",  # the token is the credential
        "portal.tenancy.api.endpoints.MeApi",  # the person's own profile and tenants
        # Machine endpoint of the utility's ChirpStack: the shared secret is the credential;
        # it only queues messages for an import and answers nothing tenant-specific.
        "meters.views.ChirpStackIntegrationView",
        # Payment providers' webhooks: the provider's signature is the credential; it only
        # settles the top-up the signed event names and answers nothing tenant-specific.
        "billing.views.PaymentWebhookView",
        # A staff member's own second factor, confirmed with the emailed token while signed
        # in as that member; it shows and changes nothing of any tenant.
        "portal.users.views.StaffFactorConfirmView",
    }
)
# The staff admin guards itself (is_staff, MFA, Django permissions): not a customer view.
STAFF_PREFIXES = ("admin/",)
# Third-party views are allowed only under these prefixes.
THIRD_PARTY_PREFIXES = ("accounts/", "i18n/", "api/v1/schema/", "api/v1/docs/")


@dataclass(frozen=True)
class Route:
    route: str
    name: str | None
    callback: Any
    converters: tuple[str, ...]

    @property
    def view_class(self) -> type | None:
        return getattr(self.callback, "view_class", None) or getattr(self.callback, "cls", None)

    @property
    def dotted(self) -> str:
        target = self.view_class or self.callback
        return f"{target.__module__}.{target.__qualname__}"

    @property
    def ours(self) -> bool:
        return self.dotted.startswith(OUR_PACKAGES)

    @property
    def scoped(self) -> bool:
        cls = self.view_class
        return cls is not None and issubclass(cls, SCOPED_BASES)


def walk(
    patterns: Sequence[URLPattern | URLResolver],
    prefix: str = "",
    namespace: str | None = None,
    converters: tuple[str, ...] = (),
) -> Iterator[Route]:
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        found = tuple(getattr(pattern.pattern, "converters", {}).keys())
        if isinstance(pattern, URLResolver):
            ns = pattern.namespace
            full_ns = f"{namespace}:{ns}" if namespace and ns else (ns or namespace)
            yield from walk(pattern.url_patterns, route, full_ns, converters + found)
        else:
            name = pattern.name
            full = f"{namespace}:{name}" if namespace and name else name
            yield Route(route, full, pattern.callback, converters + found)


def unscoped_views(patterns: Sequence[URLPattern | URLResolver]) -> list[str]:
    """Return routes of our views that are neither scoped nor reviewed-public, and third-party
    views mounted outside their allowed prefixes."""
    problems = []
    for route in walk(patterns):
        if route.route.startswith(STAFF_PREFIXES):
            continue
        if route.ours:
            if not route.scoped and route.dotted not in PUBLIC_VIEWS:
                problems.append(f"{route.route} -> {route.dotted} is not tenant-scoped")
        elif not route.route.startswith(THIRD_PARTY_PREFIXES):
            problems.append(
                f"{route.route} -> {route.dotted} is a third-party view outside "
                "its allowed prefixes"
            )
    return problems


def pages_of(kind: type, kwarg: str, public_id: object) -> list[str]:
    """The URLs of every page of this kind (AccountView or OrganisationView) that needs only the
    tenant's id, for that tenant."""
    from django.urls import get_resolver, reverse

    urls = []
    for route in walk(get_resolver().url_patterns):
        cls = route.view_class
        if cls is None or not issubclass(cls, kind) or set(route.converters) != {kwarg}:
            continue
        urls.append(reverse(route.name or "", kwargs={kwarg: public_id}))
    return urls
