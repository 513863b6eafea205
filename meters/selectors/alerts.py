"""Meter events as an account's members see them (the alerts pages and the organisation table)."""

from __future__ import annotations

from typing import Any

from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

from meters.models import (
    MeterEvent,
)

# --- Alerts (the resident's alerts page) ----------------------------------------------------


def _in_own_supply(event: str) -> str:
    """SQL: the event row `event` happened while the account stamped on it was supplied at its
    service point. With the stamp itself this is what members see: an event stamped wrongly (a
    supply recorded or ended after the event was made) never reaches another occupant. The one
    statement of the rule, for the alerts pages and the organisation table alike."""
    return f"""EXISTS (
        SELECT 1 FROM meters_supply sup
        WHERE sup.account_id = {event}.account_id
          AND sup.service_point_id = {event}.service_point_id
          AND sup.start <= {event}.occurred_at
          AND (sup."end" IS NULL OR sup."end" > {event}.occurred_at)
    )"""  # noqa: S608 - `event` is a table alias written in this module, never input


def _alert_events(account_id: int) -> QuerySet[MeterEvent]:
    # Plain SQL for the rule: the same subquery built by the ORM costs more CPU to compile
    # than to run, and the account home shows these on every visit.
    return MeterEvent.objects.filter(account_id=account_id).filter(
        RawSQL(  # noqa: S611 - no input: the fragment names columns only
            _in_own_supply('"meters_meterevent"'), (), output_field=BooleanField()
        )
    )


def alert_events_for_account(*, account_id: int, open_only: bool) -> QuerySet[MeterEvent]:
    """Return the meter events an account's members see: those of its meters that occurred
    during the account's own supply periods, newest first (open ones only if asked)."""
    qs = _alert_events(account_id).select_related("meter", "acknowledged_by")
    if open_only:
        qs = qs.filter(acknowledged_at__isnull=True)
    return qs.order_by("-occurred_at", "-id")


def alert_event_for_account(*, account_id: int, event_id: int) -> MeterEvent | None:
    """Return one event the account's members see (see alert_events_for_account), or None."""
    return (
        _alert_events(account_id)
        .select_related("meter", "acknowledged_by")
        .filter(pk=event_id)
        .first()
    )


def open_alerts_cte() -> tuple[str, dict[str, Any]]:
    """Rows (account_id, open_alerts): the unacknowledged events that the account's members
    see (as alert_events_for_account(open_only=True): stamped with the account and within one
    of its supplies at the event's service point)."""
    sql = """
        SELECT e.account_id, count(*) AS open_alerts
        FROM scope s
        JOIN meters_meterevent e ON e.account_id = s.account_id AND e.acknowledged_at IS NULL
        WHERE {in_supply}
        GROUP BY e.account_id
    """.format(in_supply=_in_own_supply("e"))  # noqa: S608 - a fixed fragment, no input
    return sql, {}
