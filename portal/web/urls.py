"""URLs of the pages that combine several apps (see portal.web.views)."""

from __future__ import annotations

from django.urls import URLPattern, path

from portal.web.views import alerts, export, organisation

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
