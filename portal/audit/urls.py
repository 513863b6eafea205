from __future__ import annotations

from django.urls import path

from portal.audit import views

app_name = "audit"

urlpatterns = [
    path("a/<uuid:account_id>/audit/", views.AccountAuditView.as_view(), name="account_log"),
    path("o/<uuid:org_id>/audit/", views.OrganisationAuditView.as_view(), name="organisation_log"),
    path(
        "a/<uuid:account_id>/audit/export.csv",
        views.AccountAuditCsvView.as_view(),
        name="account_log_csv",
    ),
    path(
        "o/<uuid:org_id>/audit/export.csv",
        views.OrganisationAuditCsvView.as_view(),
        name="organisation_log_csv",
    ),
]
