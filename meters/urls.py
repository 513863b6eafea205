from __future__ import annotations

from django.urls import path

from meters import api, views

# The usage page keeps its name (meters:account_usage) but lives in web.views.usage:
# portal/urls.py adds it (web.urls.meters_pages).
app_name = "meters"

urlpatterns = [
    path(
        "o/<uuid:org_id>/imports/",
        views.OrganisationImportsView.as_view(),
        name="organisation_imports",
    ),
    path(
        "o/<uuid:org_id>/imports/<uuid:batch_id>/",
        views.OrganisationImportView.as_view(),
        name="organisation_import",
    ),
    path(
        "integrations/chirpstack/",
        views.ChirpStackIntegrationView.as_view(),
        name="chirpstack_integration",
    ),
    path(
        "api/v1/accounts/<uuid:account_id>/consumption/",
        api.AccountConsumptionApi.as_view(),
        name="api_account_consumption",
    ),
    path("api/v1/readings/", api.ReadingsBulkApi.as_view(), name="api_readings"),
    path("api/v1/readings/batches/", api.BatchListApi.as_view(), name="api_batches"),
    path(
        "api/v1/readings/batches/<uuid:batch_id>/",
        api.BatchDetailApi.as_view(),
        name="api_batch_detail",
    ),
]
