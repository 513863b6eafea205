"""Project-level views that belong to no app: the health check."""

from __future__ import annotations

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views import View


class HealthView(View):
    """Report whether the database and the cache answer; 503 if either does not."""

    def get(self, request: HttpRequest) -> JsonResponse:
        checks: dict[str, str] = {}
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as error:  # noqa: BLE001 - any failure means "not healthy"
            checks["database"] = type(error).__name__
        try:
            cache.set("healthz", "1", 5)
            checks["cache"] = "ok" if cache.get("healthz") == "1" else "mismatch"
        except Exception as error:  # noqa: BLE001
            checks["cache"] = type(error).__name__
        healthy = all(value == "ok" for value in checks.values())
        return JsonResponse(checks, status=200 if healthy else 503)
