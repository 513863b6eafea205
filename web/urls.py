"""URLs of the pages that combine several apps (see web.views).

The home pages and the usage page moved here from tenancy and meters; their URL names stay in
the `tenancy` and `meters` namespaces (templates and links reverse them there), so they are
listed apart and portal/urls.py mounts each list with its app's own patterns."""

from __future__ import annotations

from django.urls import URLPattern, path

from web.views import alerts, export, home, organisation, usage

app_name = "web"

urlpatterns: list[URLPattern] = [
    path("a/<uuid:account_id>/alerts/", alerts.AccountAlertsView.as_view(), name="account_alerts"),
    path(
        "a/<uuid:account_id>/alerts/<int:event_id>/acknowledge/",
        alerts.AccountAlertAcknowledgeView.as_view(),
        name="account_alert_acknowledge",
    ),
    path(
        "o/<uuid:org_id>/accounts/",
        organisation.OrganisationAccountsView.as_view(),
        name="organisation_accounts",
    ),
    path(
        "o/<uuid:org_id>/accounts/export.csv",
        organisation.OrganisationAccountsCsvView.as_view(),
        name="organisation_accounts_csv",
    ),
    path("a/<uuid:account_id>/export/", export.AccountExportView.as_view(), name="account_export"),
    path(
        "a/<uuid:account_id>/export/<uuid:export_id>/status/",
        export.AccountExportStatusView.as_view(),
        name="account_export_status",
    ),
    path(
        "a/<uuid:account_id>/export/<uuid:export_id>/download/",
        export.AccountExportDownloadView.as_view(),
        name="account_export_download",
    ),
]

# Mounted in the "tenancy" namespace by portal/urls.py.
tenancy_pages: list[URLPattern] = [
    path("", home.HomeView.as_view(), name="home"),
    path("a/<uuid:account_id>/", home.AccountHomeView.as_view(), name="account_home"),
    path("o/<uuid:org_id>/", home.OrganisationHomeView.as_view(), name="organisation_home"),
]

# Mounted in the "meters" namespace by portal/urls.py.
meters_pages: list[URLPattern] = [
    path("a/<uuid:account_id>/usage/", usage.AccountUsageView.as_view(), name="account_usage"),
]
