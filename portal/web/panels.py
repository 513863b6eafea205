"""The account home page's panels (registered with portal.tenancy.panels by WebConfig.ready):
credit or the latest bill, consumption against last month and last year, open alerts and the
meters' last contact. Each reads through its app's selectors and checks the viewer's scopes.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from billing.costs import account_costs
from billing.selectors import credit_state, latest_bill
from meters.selectors import (
    alert_events_for_account,
    meters_of_account,
    month_comparison,
)
from portal.lib.money import from_minor
from portal.tenancy.models import Account
from portal.tenancy.panels import Panel, panel_provider_register
from portal.web.selectors import KIND_UNITS


def credit_panel(account: Account, scopes: frozenset[str], as_of: dt.datetime) -> Panel | None:
    if "billing:read" not in scopes:
        return None
    today = as_of.astimezone(zoneinfo.ZoneInfo(account.time_zone)).date()
    if account.payment_mode == Account.PaymentMode.PREPAID:
        state = credit_state(account_id=account.pk, as_of_day=today)
        if state is None:
            return None
        return Panel(
            "web/panels/credit.html",
            {
                "balance": from_minor(state.balance, state.currency),
                "currency": state.currency,
                "days_left": state.days_left,
                "average": (
                    from_minor(state.average_daily_cost, state.currency)
                    if state.average_daily_cost
                    else None
                ),
                "low": state.balance <= 0 or (state.days_left is not None and state.days_left < 3),
                "disconnected": state.disconnected,
                "can_top_up": "billing:topup" in scopes,
            },
        )
    bill = latest_bill(account_id=account.pk)
    to_date = bill_to_date(account, as_of)
    return Panel(
        "web/panels/bill.html",
        {
            "bill": bill,
            "total": from_minor(bill.total, bill.currency) if bill else None,
            "to_date": from_minor(to_date[0], to_date[1]) if to_date else None,
            "to_date_currency": to_date[1] if to_date else "",
            "month_start": today.replace(day=1),
        },
    )


def bill_to_date(account: Account, as_of: dt.datetime) -> tuple[int, str] | None:
    """This month's charges less its export credit so far, priced day by day as the bill will
    be (billing.costs). None when no supply has a tariff."""
    zone = zoneinfo.ZoneInfo(account.time_zone)
    found = account_costs(
        account_id=account.pk,
        time_zone=account.time_zone,
        first=as_of.astimezone(zone).date().replace(day=1),
        as_of=as_of,
    )
    if found is None:
        return None
    charge, credit, currency = found
    return charge - credit, currency


def usage_panel(account: Account, scopes: frozenset[str], as_of: dt.datetime) -> Panel | None:
    if "meters:read" not in scopes:
        return None
    today = as_of.astimezone(zoneinfo.ZoneInfo(account.time_zone)).date()
    rows = []
    for row in month_comparison(account_id=account.pk, today=today):
        unit, divisor = KIND_UNITS.get(row.kind, ("kWh", 1000))
        change = (
            round(100 * (row.this_month - row.last_month) / row.last_month)
            if row.last_month
            else None
        )
        rows.append(
            {
                "kind": row.kind,
                "unit": unit,
                "this_month": row.this_month / divisor,
                "last_month": row.last_month / divisor,
                "year_ago": row.year_ago / divisor if row.year_ago else None,
                "change": change,
            }
        )
    return Panel("web/panels/usage.html", {"rows": rows, "today": today})


def alerts_panel(account: Account, scopes: frozenset[str], as_of: dt.datetime) -> Panel | None:
    if "meters:read" not in scopes:
        return None
    events = list(alert_events_for_account(account_id=account.pk, open_only=True)[:5])
    meters = meters_of_account(account_id=account.pk, as_of=as_of)
    return Panel("web/panels/alerts.html", {"events": events, "meters": meters})


def register() -> None:
    for provider in (credit_panel, usage_panel, alerts_panel):
        panel_provider_register(provider)
    register_organisation_panels()


def register_organisation_panels() -> None:
    """The organisation home's panels (portal.web.organisation_panels)."""
    from portal.tenancy.panels import organisation_panel_provider_register
    from portal.web.organisation_panels import ORGANISATION_PANELS

    for provider in ORGANISATION_PANELS:
        organisation_panel_provider_register(provider)
