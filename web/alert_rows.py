"""One row of the account's alerts, from a meter event or a low-credit warning: the same
row on the alerts page and in the home page's alerts panel."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from billing.selectors import ShortageAlert
from meters.models import MeterEvent
from portal.lib.money import format_money
from portal.tenancy.models import Account

_BADGES = {
    MeterEvent.Severity.SERIOUS: "text-bg-danger",
    MeterEvent.Severity.WARNING: "text-bg-warning",
    MeterEvent.Severity.INFO: "text-bg-secondary",
}


@dataclass(frozen=True)
class AlertRow:
    """One line of the alerts table, whatever its source."""

    key: str  # unique on the page: "event-<id>" or "warning-<id>"
    at: dt.datetime
    kind: str
    detail: str
    severity: int
    open: bool
    event: MeterEvent | None = None

    @property
    def severity_label(self) -> str:
        return str(MeterEvent.Severity(self.severity).label)

    @property
    def badge(self) -> str:
        return _BADGES[MeterEvent.Severity(self.severity)]

    @property
    def acknowledged_by(self) -> str:
        """Who acknowledged the event, as members may read it: staff are not named."""
        user = self.event.acknowledged_by if self.event else None
        if user is None:
            return ""
        if user.is_staff:
            return _("the utility's staff")
        # A manager's address is theirs to give: residents see a name, or a role.
        return user.name or _("a manager")


def event_row(event: MeterEvent) -> AlertRow:
    return AlertRow(
        key=f"event-{event.pk}",
        at=event.occurred_at,
        kind=event.get_kind_display(),
        detail=_("Meter %(serial)s") % {"serial": event.meter.serial},
        severity=event.severity,
        open=event.acknowledged_at is None,
        event=event,
    )


def warning_row(alert: ShortageAlert, account: Account) -> AlertRow:
    warning = alert.warning
    if warning.threshold == 0:
        kind = _("Credit used up")
    else:
        kind = ngettext(
            "Low credit: %(days)s day or less left",
            "Low credit: %(days)s days or less left",
            warning.threshold,
        ) % {"days": warning.threshold}
    return AlertRow(
        key=f"warning-{warning.pk}",
        at=warning.created_at,
        kind=kind,
        detail=_("Balance then: %(balance)s")
        % {"balance": format_money(warning.balance, account.currency)},
        # An empty balance, or a day left, comes before a disconnection.
        severity=MeterEvent.Severity.SERIOUS
        if warning.threshold <= 1
        else MeterEvent.Severity.WARNING,
        open=alert.open,
    )
