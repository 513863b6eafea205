"""Membership roles. Smaller numbers are more powerful; the gaps leave room for new roles."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.IntegerChoices):
    OWNER = 100, _("Owner")
    MANAGER = 200, _("Manager")
    PAYER = 300, _("Payer")
    VIEWER = 400, _("Viewer")

    @property
    def api_name(self) -> str:
        """Stable lower-case name used in audit data, the API and exports."""
        return self.name.lower()

    def at_least(self, other: Role) -> bool:
        """Return True if this role is as powerful as `other` or more."""
        return self.value <= other.value

    @classmethod
    def from_api_name(cls, name: str) -> Role:
        """Parse `owner`, `manager`, ... back into a Role.

        :raises ValueError: for an unknown name.
        """
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}") from None

    @classmethod
    def label_for_name(cls, name: str) -> str:
        """Return the translated label for a stored api name, or the name itself if unknown."""
        try:
            return str(cls.from_api_name(name).label)
        except ValueError:
            return name
