"""IANA time zones: accounts display their data in their own zone."""

from __future__ import annotations

import zoneinfo
from functools import cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


@cache
def available_time_zones() -> frozenset[str]:
    """Return every IANA zone name this Python knows (tzdata is pinned for stable results)."""
    return frozenset(zoneinfo.available_timezones())


def time_zone_choices() -> list[tuple[str, str]]:
    """Return the zones as sorted form choices."""
    return [(name, name) for name in sorted(available_time_zones())]


def validate_time_zone(value: str) -> None:
    """Accept only IANA zone names such as Asia/Taipei.

    :raises ValidationError: for anything else.
    """
    if value not in available_time_zones():
        raise ValidationError(_("%(value)s is not a known time zone."), params={"value": value})


def default_time_zone() -> str:
    """The zone of a tenant created without one: the site's (settings.TIME_ZONE)."""
    zone: str = settings.TIME_ZONE
    return zone
