from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class UsersConfig(AppConfig):
    name = "portal.users"
    label = "users"
    verbose_name = _("Users")

    def ready(self) -> None:
        # The only signal receivers in the project: they turn authentication events from
        # Django and allauth into audit entries.
        from portal.users import receivers

        receivers.connect()
