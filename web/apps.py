from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WebConfig(AppConfig):
    """Pages and commands that combine several apps: the top layer (home pages, usage, alerts,
    exports, the demo data)."""

    name = "web"
    label = "web"
    verbose_name = _("Portal")

    def ready(self) -> None:
        from portal import checks  # noqa: F401 - registers the deploy checks
