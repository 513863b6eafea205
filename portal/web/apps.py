from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WebConfig(AppConfig):
    """Pages and commands that combine several apps (the demo data, later the dashboards)."""

    name = "portal.web"
    label = "web"
    verbose_name = _("Portal")

    def ready(self) -> None:
        from portal import checks  # noqa: F401 - registers the deploy checks
        from portal.web.panels import register

        register()
