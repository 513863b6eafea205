"""DRF throttles for the machine endpoints, on the shared Redis counter of portal.lib.ratelimit.

One mechanism for every limited endpoint: the payment webhooks and the ChirpStack integration
call `rate_limited` directly, the API-key endpoints through this throttle.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from portal.lib.ratelimit import rate_limited
from portal.tenancy.selectors import ApiKeyAccess

WINDOW_SECONDS = 60


class ApiKeyRateThrottle(BaseThrottle):
    """settings.MACHINE_API_RATE_PER_MINUTE calls a minute per API key and endpoint.

    Keyed by the key, not the address: a head-end behind a NAT shares nothing with another
    organisation's, and one key cannot spend another's allowance. Each endpoint counts apart,
    so polling a batch's progress does not use up the allowance for sending readings.
    """

    def allow_request(self, request: Request, view: Any) -> bool:
        access = request.auth
        if not isinstance(access, ApiKeyAccess):
            # The base view refuses the request as unauthenticated right after the throttles.
            return True
        return not rate_limited(
            f"api-key:{access.api_key.pk}:{type(view).__name__}",
            limit=settings.MACHINE_API_RATE_PER_MINUTE,
            window_seconds=WINDOW_SECONDS,
        )

    def wait(self) -> float:
        # A fixed window: the counter may have started up to a minute ago, so a full window
        # is the wait that is always long enough.
        return WINDOW_SECONDS
