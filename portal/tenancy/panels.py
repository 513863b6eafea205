"""Panels of the account home page, supplied by the apps above tenancy.

Tenancy cannot know meters or billing (import-linter), yet the account's home page is where a
resident looks first: balance, consumption, alerts. The apps that know register providers here
(from their AppConfig.ready); the home view renders whatever they return, in order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from portal.tenancy.models import Account


@dataclass(frozen=True)
class Panel:
    template: str
    context: dict[str, Any] = field(default_factory=dict)


PanelProvider = Callable[[Account, frozenset[str], dt.datetime], "Panel | None"]
_providers: list[PanelProvider] = []


def panel_provider_register(provider: PanelProvider) -> None:
    """Add a provider (once; registering the same one again is a no-op)."""
    if provider not in _providers:
        _providers.append(provider)


def account_panels(*, account: Account, scopes: frozenset[str], as_of: dt.datetime) -> list[Panel]:
    """The panels every registered provider has for this account and viewer's scopes."""
    panels = []
    for provider in _providers:
        panel = provider(account, scopes, as_of)
        if panel is not None:
            panels.append(panel)
    return panels
