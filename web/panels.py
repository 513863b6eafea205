"""The account home page's panels:
credit or the latest bill, this month so far against the same days of last month and of last
year, open alerts and the meters' last contact. Each reads through its app's selectors and
checks the viewer's scopes.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from django.utils.dateformat import time_format
from django.utils.formats import date_format
from django.utils.translation import pgettext

from billing.costs import account_costs
from billing.credit import is_low_credit
from billing.selectors import (
    credit_state,
    credit_used_up,
    latest_bill,
    shortage_alerts_for_account,
    warning_threshold,
)
from meters.models import Direction, UtilityKind
from meters.periods import ComparedSpan
from meters.selectors.alerts import alert_events_for_account
from meters.selectors.consumption import month_comparison
from meters.selectors.fleet import meters_of_account
from meters.units import display_unit
from portal.lib.money import from_minor
from portal.lib.periods import local_date, month_start
from portal.tenancy.models import Account
from web.alert_rows import event_row, warning_row
from web.selectors import account_base_unit, account_open_alert_count


@dataclass(frozen=True)
class Panel:
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    # The panel draws Plotly figures: the page loads plotly.js and the chart script.
    charts: bool = False


ALERTS_SHOWN = 5


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
                # At or below zero: the emergency credit left and what happens next, instead
                # of "0.0 days left".
                "used_up": credit_used_up(state=state),
                "balance": from_minor(state.balance, state.currency),
                "currency": state.currency,
                "days_left": state.days_left,
                "average": (
                    from_minor(state.average_daily_cost, state.currency)
                    if state.average_daily_cost
                    else None
                ),
                "low": is_low_credit(
                    balance=state.balance,
                    days_left=state.days_left,
                    threshold=warning_threshold(account_id=account.pk, as_of_day=today),
                ),
                "disconnected": state.disconnected,
                "covered_by_export": state.average_daily_cost is None and state.charged_days > 0,
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
            "month_start": month_start(today),
        },
    )


def bill_to_date(account: Account, as_of: dt.datetime) -> tuple[int, str] | None:
    """This month's charges less its export credit so far, priced day by day as the bill will
    be (billing.costs). None when no supply has a tariff."""
    zone = zoneinfo.ZoneInfo(account.time_zone)
    found = account_costs(
        account_id=account.pk,
        time_zone=account.time_zone,
        first=month_start(local_date(as_of, zone)),
        as_of=as_of,
    )
    if found is None:
        return None
    charge, credit, currency = found
    return charge - credit, currency


def _span_label(span: ComparedSpan, *, with_year: bool) -> str:
    """The days a span covers: "1-4 Dec" or "1-4 Dec 2025" (an en dash between the days; in
    Chinese "12月1-4日")."""
    month = date_format(
        span.first,
        pgettext("date format: the month (and year) of a range of days", "M Y")
        if with_year
        else pgettext("date format: the month of a range of days", "M"),
    )
    if span.first == span.last:
        return pgettext("one day of a month", "%(first)s %(month)s") % {
            "first": span.first.day,
            "month": month,
        }
    # An en dash between the first and last day, as typeset ranges have.
    return pgettext("days of a month", "%(first)s–%(last)s %(month)s") % {  # noqa: RUF001
        "first": span.first.day,
        "last": span.last.day,
        "month": month,
    }


def usage_panel(account: Account, scopes: frozenset[str], as_of: dt.datetime) -> Panel | None:
    if "meters:read" not in scopes:
        return None
    comparison = month_comparison(account_id=account.pk, as_of=as_of, time_zone=account.time_zone)
    rows: list[dict[str, Any]] = []
    for row in comparison.rows:
        unit, divisor = display_unit(
            account_base_unit(account_id=account.pk, kind=row.kind, direction=row.direction)
        )
        kind = str(UtilityKind(row.kind).label)
        exported = row.direction == Direction.EXPORT
        change = (
            round(100 * (row.this_month - row.last_month) / row.last_month)
            if row.last_month
            else None
        )
        rows.append(
            {
                "kind": row.kind,
                # Exported energy is a row of its own: never netted with, or added to, imports.
                "label": (
                    pgettext("energy direction", "%(kind)s exported") % {"kind": kind}
                    if exported
                    else kind
                ),
                "exported": exported,
                "unit": unit,
                "this_month": row.this_month / divisor,
                "last_month": row.last_month / divisor,
                "year_ago": row.year_ago / divisor if row.year_ago else None,
                "change": change,
            }
        )
    this = comparison.this_month
    return Panel(
        "web/panels/usage.html",
        {
            "rows": rows,
            "today": this.last,
            "this_span": _span_label(this, with_year=False),
            "last_span": _span_label(comparison.last_month, with_year=False),
            "year_ago_span": _span_label(comparison.year_ago, with_year=True),
            "until": time_format(this.until, "H:i") if this.until is not None else "",
        },
    )


def alerts_panel(account: Account, scopes: frozenset[str], as_of: dt.datetime) -> Panel | None:
    """The newest open alerts: meter events, and low-credit warnings for readers of billing
    data (as the alerts page lists them), with their count as the organisation table has it."""
    if "meters:read" not in scopes:
        return None
    credit_alerts = "billing:read" in scopes
    today = as_of.astimezone(zoneinfo.ZoneInfo(account.time_zone)).date()
    rows = [
        event_row(event)
        for event in alert_events_for_account(account_id=account.pk, open_only=True)[:ALERTS_SHOWN]
    ]
    if credit_alerts:
        rows += [
            warning_row(alert, account)
            for alert in shortage_alerts_for_account(
                account_id=account.pk, as_of_day=today, open_only=True
            )
        ]
    rows.sort(key=lambda row: (row.at, row.key), reverse=True)
    count = account_open_alert_count(account=account, as_of=as_of, credit_alerts=credit_alerts)
    meters = meters_of_account(account_id=account.pk, as_of=as_of)
    return Panel(
        "web/panels/alerts.html",
        {"rows": rows[:ALERTS_SHOWN], "count": count, "meters": meters},
    )


def account_panels(*, account: Account, scopes: frozenset[str], as_of: dt.datetime) -> list[Panel]:
    """The account home's panels for this viewer's scopes, in page order."""
    panels = (
        credit_panel(account, scopes, as_of),
        usage_panel(account, scopes, as_of),
        alerts_panel(account, scopes, as_of),
    )
    return [panel for panel in panels if panel is not None]
