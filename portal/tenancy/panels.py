"""Panels of the account and organisation home pages, supplied by the apps above tenancy.

Tenancy cannot know meters or billing (import-linter), yet the account's home page is where a
resident looks first: balance, consumption, alerts. The apps that know register providers here
(from their AppConfig.ready); the home view renders whatever they return, in order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from portal.tenancy.models import Account, Organisation


@dataclass(frozen=True)
class Panel:
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    # The panel draws Plotly figures: the page loads plotly.js and the chart script.
    charts: bool = False


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


# --- The organisation home ------------------------------------------------------------------
# The same for organisations: the low-balance list and the roll-up charts need billing and
# meters, so portal.web supplies them.

# (organisation, the reader's scopes, now, the organisation paths withheld from the reader)
OrganisationPanelProvider = Callable[
    [Organisation, frozenset[str], dt.datetime, tuple[str, ...]], "Panel | None"
]
_organisation_providers: list[OrganisationPanelProvider] = []


def organisation_panel_provider_register(provider: OrganisationPanelProvider) -> None:
    """Add an organisation home provider (once; registering the same one again is a no-op)."""
    if provider not in _organisation_providers:
        _organisation_providers.append(provider)


def organisation_panels(
    *,
    organisation: Organisation,
    scopes: frozenset[str],
    as_of: dt.datetime,
    withheld: tuple[str, ...] = (),
) -> list[Panel]:
    """The panels every registered provider has for this organisation and viewer's scopes,
    leaving out the organisations beneath the `withheld` paths."""
    panels = []
    for provider in _organisation_providers:
        panel = provider(organisation, scopes, as_of, withheld)
        if panel is not None:
            panels.append(panel)
    return panels
