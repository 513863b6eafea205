"""Installs the portal's admin site (kept apart: app configs load before models)."""

from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class PortalAdminConfig(AdminConfig):
    default_site = "portal.adminsite.PortalAdminSite"
