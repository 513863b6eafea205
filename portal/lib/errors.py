"""The base of every domain error: a message fit to show the person who caused it."""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


class DomainError(Exception):
    """Raised by services for a refused change; interfaces show `message` (translatable)."""

    default_message: str | Promise = _("The change could not be made.")

    def __init__(self, message: str | Promise | None = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(str(self.message))
