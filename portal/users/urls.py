"""URLs of the users app."""

from __future__ import annotations

from django.urls import path

from portal.users import views

app_name = "users"

urlpatterns = [
    path(
        "account/staff-factor/<str:token>/",
        views.StaffFactorConfirmView.as_view(),
        name="staff_factor_confirm",
    ),
]
