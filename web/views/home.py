"""The landing page, the account home and the organisation home."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from portal.tenancy.scopes import Scope
from portal.tenancy.selectors import organisation_accounts, tenants_visible_to
from portal.tenancy.views.base import AccountView, OrganisationView, SignedInView
from web.organisation_panels import organisation_panels
from web.panels import account_panels


class HomeView(SignedInView):
    """After sign-in: everything the person can open."""

    template_name = "tenancy/home.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        tenants = tenants_visible_to(user=self.user)
        return self.render_to_response(self.get_context_data(tenants=tenants))


class AccountHomeView(AccountView):
    """The account's home page."""

    required_scope = Scope.METERS_READ
    template_name = "tenancy/account_home.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        panels = account_panels(
            account=self.account,
            scopes=frozenset(str(s) for s in self.access.scopes),
            as_of=timezone.now(),
        )
        return self.render_to_response(self.get_context_data(panels=panels))


class OrganisationHomeView(OrganisationView):
    """The organisation's home page: the panels the apps above tenancy supply (subsidiary tree,
    low balances, consumption charts) and the organisation's own accounts."""

    required_scope = Scope.METERS_READ
    template_name = "tenancy/organisation_home.html"
    paginate_by = 50

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        panels = organisation_panels(
            organisation=self.organisation,
            scopes=frozenset(str(s) for s in self.access.scopes),
            as_of=timezone.now(),
            withheld=self.withheld_paths,
        )
        accounts = Paginator(organisation_accounts(organisation=self.organisation), 50)
        page = accounts.get_page(request.GET.get("page"))
        return self.render_to_response(
            self.get_context_data(
                panels=panels,
                charts=any(panel.charts for panel in panels),
                accounts_page=page,
            )
        )
