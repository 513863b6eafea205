"""Disconnection when prepaid credit runs out, and reconnection when it comes back.

Supply is cut only through meters' command outbox (a relay for electricity, a valve for water,
gas and heat), and only when a person could get help: never at night, at weekends or on a
public holiday (`Holiday`), in the account's local time. Outside those hours nothing is queued;
the hourly sweep tries again when the window opens, so a weekend shortfall is acted on on
Monday morning, not lost. Reconnection is queued whenever the balance is restored: as soon as
the balance is back above the disconnection limit (minus the emergency credit), at any hour.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.db import transaction
from django.db.models import F

from billing.models import Holiday, Wallet
from meters.models import MeterCommand, MeterInstallation, Supply, UtilityKind
from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.money import format_minor

_CUT = {
    UtilityKind.ELECTRICITY: MeterCommand.Command.RELAY_DISCONNECT,
    UtilityKind.WATER: MeterCommand.Command.VALVE_CLOSE,
    UtilityKind.GAS: MeterCommand.Command.VALVE_CLOSE,
    UtilityKind.HEAT: MeterCommand.Command.VALVE_CLOSE,
}
_RESTORE = {
    MeterCommand.Command.RELAY_DISCONNECT: MeterCommand.Command.RELAY_RECONNECT,
    MeterCommand.Command.VALVE_CLOSE: MeterCommand.Command.VALVE_OPEN,
}


def disconnection_allowed(*, local: dt.datetime) -> bool:
    """Whether a disconnection may be queued at this local time of the account.

    Weekdays that are not public holidays, within PREPAID_DISCONNECT_HOURS (start inclusive,
    end exclusive; 09-16 by default, so that the resident can still reach support and top up
    the same day).
    """
    start, end = settings.PREPAID_DISCONNECT_HOURS
    if local.weekday() >= 5 or not start <= local.hour < end:
        return False
    return not Holiday.objects.filter(day=local.date()).exists()


def _queue(
    meters: list[tuple[int, str]], *, restore: bool, reason: str, key: str, actor: Actor
) -> list[str]:
    """Put the commands in meters' outbox; the caller's one audit entry names them all (a
    disconnection is one change, however many meters it takes)."""
    queued = []
    for meter_id, kind in meters:
        cut = _CUT[UtilityKind(kind)]
        command = _RESTORE[cut] if restore else cut
        order, _ = MeterCommand.objects.get_or_create(
            idempotency_key=f"{key}:{meter_id}",
            defaults={
                "meter_id": meter_id,
                "command": command,
                "reason": reason[:300],
                "requested_by_label": actor.label[:254],
            },
        )
        queued.append(f"{order.command}:{meter_id}")
    return queued


def _meters_of(account_id: int, as_of: dt.datetime) -> list[tuple[int, str]]:
    """(meter id, kind) of the meters installed where the account is supplied now."""
    service_points = Supply.objects.filter(account_id=account_id, start__lte=as_of).exclude(
        end__lte=as_of
    )
    installed = (
        MeterInstallation.objects.filter(
            service_point__in=service_points.values("service_point"), installed_at__lte=as_of
        )
        .exclude(removed_at__lte=as_of)
        .select_related("meter")
        .order_by("meter_id")
    )
    return [(i.meter_id, i.meter.kind) for i in installed]


def _switch(wallet: Wallet, *, restore: bool, as_of: dt.datetime, actor: Actor) -> None:
    """Cut (or restore) the wallet's supply: queue the meters' commands, mark the wallet and
    record the one audit entry, in the caller's transaction and under its wallet lock."""
    balance = format_minor(wallet.balance, wallet.currency)
    if restore:
        assert wallet.disconnected_at is not None  # noqa: S101 - checked by the caller
        reason = f"prepaid credit restored: balance {balance}"
        key = f"prepaid-restore:{wallet.pk}:{wallet.disconnected_at:%Y%m%dT%H%M%S}"
    else:
        reason = f"prepaid credit exhausted: balance {balance}"
        key = f"prepaid-cut:{wallet.pk}:{as_of:%Y%m%dT%H%M%S}"
    queued = _queue(
        _meters_of(wallet.account_id, as_of), restore=restore, reason=reason, key=key, actor=actor
    )
    wallet.disconnected_at = None if restore else as_of
    wallet.save(update_fields=["disconnected_at", "updated_at"])
    audit_record(
        actor=actor,
        event=AuditEvent.SUPPLY_RECONNECT_QUEUED
        if restore
        else AuditEvent.SUPPLY_DISCONNECT_QUEUED,
        account=wallet.account,
        target=wallet,
        data={"number": wallet.account.number, "balance": balance, "commands": queued},
    )


def supply_disconnect_due(*, as_of: dt.datetime, actor: Actor) -> int:
    """Queue disconnection for every wallet below its limit, where the local time allows it.

    One transaction per wallet (each locks only its own wallet row); returns how many wallets
    were disconnected now.
    """
    candidates = list(
        Wallet.objects.filter(disconnected_at__isnull=True, balance__lt=-F("emergency_credit"))
        .values_list("pk", flat=True)
        .order_by("pk")
    )
    done = 0
    for wallet_id in candidates:
        with transaction.atomic():
            wallet = (
                Wallet.objects.select_for_update(of=("self",))
                .select_related("account")
                .get(pk=wallet_id)
            )
            if wallet.disconnected_at is not None or wallet.balance >= -wallet.emergency_credit:
                continue  # topped up or handled meanwhile
            local = as_of.astimezone(zoneinfo.ZoneInfo(wallet.account.time_zone))
            if not disconnection_allowed(local=local):
                continue
            _switch(wallet, restore=False, as_of=as_of, actor=actor)
            done += 1
    return done


def supply_reconnect_if_restored(*, wallet_id: int, actor: Actor, as_of: dt.datetime) -> bool:
    """Queue reconnection if the wallet was disconnected and its balance is back above the
    limit; call it inside the transaction that credited the wallet. Returns whether it did."""
    wallet = (
        Wallet.objects.select_for_update(of=("self",)).select_related("account").get(pk=wallet_id)
    )
    if wallet.disconnected_at is None or wallet.balance < -wallet.emergency_credit:
        return False
    _switch(wallet, restore=True, as_of=as_of, actor=actor)
    return True
