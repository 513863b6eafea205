"""Bills, wallet, top-up and notification pages, the sandbox checkout, payment webhooks and
the top-up API."""

from __future__ import annotations

from django.urls import path

from billing import api, views
from portal.notifications.views import AccountNotificationsView

app_name = "billing"

urlpatterns = [
    path("a/<uuid:account_id>/bills/", views.AccountBillsView.as_view(), name="account_bills"),
    path(
        "a/<uuid:account_id>/bills/<uuid:bill_id>/",
        views.AccountBillView.as_view(),
        name="account_bill",
    ),
    path(
        "a/<uuid:account_id>/bills/<uuid:bill_id>/pdf/",
        views.AccountBillPdfView.as_view(),
        name="account_bill_pdf",
    ),
    path("a/<uuid:account_id>/wallet/", views.AccountWalletView.as_view(), name="account_wallet"),
    path(
        "a/<uuid:account_id>/notifications/",
        # The page lives with the notifications app; its URL and name stay where people know them.
        AccountNotificationsView.as_view(),
        name="account_notifications",
    ),
    path("a/<uuid:account_id>/topup/", views.TopUpView.as_view(), name="topup"),
    path(
        "a/<uuid:account_id>/topup/<uuid:topup_id>/",
        views.TopUpReceiptView.as_view(),
        name="topup_receipt",
    ),
    path(
        "a/<uuid:account_id>/topup/<uuid:topup_id>/sandbox-checkout/",
        views.SandboxCheckoutView.as_view(),
        name="sandbox_checkout",
    ),
    path(
        "payments/webhooks/<slug:provider>/",
        views.PaymentWebhookView.as_view(),
        name="payment_webhook",
    ),
    path(
        "api/v1/accounts/<uuid:account_id>/topups/", api.TopUpListApi.as_view(), name="api_topups"
    ),
    path(
        "api/v1/accounts/<uuid:account_id>/topups/<uuid:topup_id>/",
        api.TopUpDetailApi.as_view(),
        name="api_topup_detail",
    ),
]
