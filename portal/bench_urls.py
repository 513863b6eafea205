"""The benchmark's URLconf (portal.settings.bench only): every URL of the portal, plus the two
baselines the web figures are measured against (docs/QUALITY.md): a trivial JSON view and a view
that runs one indexed query. Both go through the same middleware as every page."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views import View

from portal.tenancy.models import Account
from portal.urls import handler403, handler404
from portal.urls import urlpatterns as portal_urlpatterns

__all__ = ["handler403", "handler404", "urlpatterns"]


class TrivialJsonView(View):
    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"ok": True})


class OneQueryView(View):
    def get(self, request: HttpRequest, number: str) -> JsonResponse:
        # The ORM straight in the view, as the baseline is meant to be: one indexed lookup.
        name = Account.objects.filter(number=number).values_list("name", flat=True).first()
        return JsonResponse({"number": number, "name": name})


urlpatterns = [
    path("bench/trivial/", TrivialJsonView.as_view(), name="bench_trivial"),
    path("bench/one-query/<str:number>/", OneQueryView.as_view(), name="bench_one_query"),
    *portal_urlpatterns,
]
