"""Per-request context: a request id for logs and the audit log, and the client address."""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers, patch_cache_control

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def client_ip(request: HttpRequest) -> str | None:
    """Return the client's address, trusting only as many X-Forwarded-For hops as configured."""
    trusted = settings.TRUSTED_PROXY_COUNT
    candidate: str | None = request.META.get("REMOTE_ADDR")
    if trusted > 0:
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [h for h in hops if h]
        # The proxies we run append the address they saw; anything further left is client-made.
        if len(hops) >= trusted:
            candidate = hops[-trusted]
    if not candidate:
        return None
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    # A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; they are IPv4 clients.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class RequestContextMiddleware:
    """Give every request an id (echoed as X-Request-ID) and its client address."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = uuid.uuid4()
        request.request_id = request_id  # type: ignore[attr-defined]
        request.client_ip = client_ip(request)  # type: ignore[attr-defined]
        token = _request_id.set(str(request_id))
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
        response["X-Request-ID"] = str(request_id)
        return response


class RequestContextLogFilter(logging.Filter):
    """Add the current request id to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class PrivateResponsesMiddleware:
    """No cache keeps what a signed-in person or an API client was shown (issue 12).

    Every response to a request with a session user or an Authorization header is marked
    `no-store` (plus `private`), so that wallets, bills, PDFs, CSVs, consumption JSON and export
    files never stay in a shared or browser cache after sign-out. A view that states its own
    `no-store` keeps its header; anything else is overridden, because no authenticated answer
    may be cached.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        signed_in = user is not None and user.is_authenticated
        authenticated = signed_in or "HTTP_AUTHORIZATION" in request.META
        if authenticated and "no-store" not in response.get("Cache-Control", ""):
            add_never_cache_headers(response)
            patch_cache_control(response, private=True)
        return response
