"""Domain errors of the meters app; messages are fit to show the person who caused them."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from portal.lib.errors import DomainError


class MeterError(DomainError):
    """Base class of the meters app's refusals."""


class ReadingNotFound(MeterError):
    default_message = _("There is no reading at that time on that register.")
