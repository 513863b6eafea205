"""The organisation home page's panels: the subsidiary tree, the prepaid accounts low on
credit, and the subtree's consumption charts. Each checks the viewer's scopes and reads
through selectors."""

from __future__ import annotations

import datetime as dt
import hashlib
from urllib.parse import urlencode

from django.core.cache import cache
from django.urls import reverse

from meters.selectors.subtree import KindTotal
from portal.tenancy.models import Organisation
from web.charts import organisation_usage_charts
from web.panels import Panel
from web.selectors import (
    organisation_daily_consumption,
    organisation_low_balance,
    organisation_monthly_consumption,
    organisation_subtree,
)

LOW_BALANCE_SHOWN = 10
# A year of daily rollups of a large group is millions of rows (measured: 1.8 M rows for 5,000
# accounts, about a second): the sums are kept for as long as imports may take to show anyway.
CHART_CACHE_SECONDS = 15 * 60


def subtree_panel(
    organisation: Organisation,
    scopes: frozenset[str],
    as_of: dt.datetime,
    withheld: tuple[str, ...],
) -> Panel | None:
    """Every organisation beneath this one, nested, with its open accounts."""
    nodes = organisation_subtree(organisation=organisation, withheld=withheld)
    if len(nodes) < 2:
        return None
    return Panel("web/panels/organisation_tree.html", {"root": nodes[0], "count": len(nodes) - 1})


def low_balance_panel(
    organisation: Organisation,
    scopes: frozenset[str],
    as_of: dt.datetime,
    withheld: tuple[str, ...],
) -> Panel | None:
    """The prepaid accounts of the subtree that are low on credit, worst first."""
    if "billing:read" not in scopes:
        return None
    rows, total = organisation_low_balance(
        organisation=organisation, as_of=as_of, limit=LOW_BALANCE_SHOWN, withheld=withheld
    )
    accounts_url = reverse("web:organisation_accounts", args=[organisation.public_id])
    return Panel(
        "web/panels/organisation_low_balance.html",
        {
            "rows": rows,
            "total": total,
            "more": total > len(rows),
            "all_url": f"{accounts_url}?{urlencode({'low': '1', 'sort': 'days_left'})}",
        },
    )


def usage_charts_panel(
    organisation: Organisation,
    scopes: frozenset[str],
    as_of: dt.datetime,
    withheld: tuple[str, ...],
) -> Panel | None:
    """The subtree's imported and exported energy or volume per utility kind, as separate
    series: the last 30 days and the last 12 months."""
    if "meters:read" not in scopes:
        return None
    # v2: the totals carry their direction (a cached v1 list would be read as imports alone).
    # Per set of withheld organisations too: a reader without a second factor must not be
    # served sums that include what is withheld from them.
    hidden = hashlib.sha256("|".join(withheld).encode()).hexdigest()[:16] if withheld else "-"
    key = f"web:organisation-usage:v2:{organisation.pk}:{hidden}:{as_of:%Y-%m-%d}"
    cached: tuple[list[KindTotal], list[KindTotal]] | None = cache.get(key)
    if cached is None:
        cached = (
            organisation_daily_consumption(
                organisation=organisation, as_of=as_of, days=30, withheld=withheld
            ),
            organisation_monthly_consumption(
                organisation=organisation, as_of=as_of, months=12, withheld=withheld
            ),
        )
        cache.set(key, cached, CHART_CACHE_SECONDS)
    daily, monthly = cached
    charts = organisation_usage_charts(daily=daily, monthly=monthly)
    return Panel("web/panels/organisation_usage.html", {"charts": charts}, charts=bool(charts))


def organisation_panels(
    *,
    organisation: Organisation,
    scopes: frozenset[str],
    as_of: dt.datetime,
    withheld: tuple[str, ...] = (),
) -> list[Panel]:
    """The organisation home's panels for this viewer's scopes, in page order, leaving out the
    organisations beneath the `withheld` paths."""
    panels = (
        low_balance_panel(organisation, scopes, as_of, withheld),
        subtree_panel(organisation, scopes, as_of, withheld),
        usage_charts_panel(organisation, scopes, as_of, withheld),
    )
    return [panel for panel in panels if panel is not None]
