"""The project's URLs. Customer pages live under /a/<account_id>/ and /o/<org_id>/."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.i18n import set_language
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from meters import urls as meters_urls
from portal.tenancy import urls as tenancy_urls
from portal.views import HealthView
from web import urls as web_urls

urlpatterns = [
    path("healthz", HealthView.as_view(), name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("i18n/setlang/", set_language, name="set_language"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path(
        "api/v1/docs/", SpectacularSwaggerSplitView.as_view(url_name="api_schema"), name="api_docs"
    ),
    path("", include("portal.users.urls")),
    # The home pages and the usage page live in web (they combine apps) but keep their names
    # in the tenancy and meters namespaces, so each namespace is its app's patterns plus web's.
    path("", include((web_urls.tenancy_pages + tenancy_urls.urlpatterns, "tenancy"))),
    path("", include("portal.audit.urls")),
    path("", include((web_urls.meters_pages + meters_urls.urlpatterns, "meters"))),
    path("", include("billing.urls")),
    path("", include("web.urls")),
]

handler403 = "portal.errors.permission_denied"
handler404 = "portal.errors.page_not_found"
