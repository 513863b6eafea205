"""Audit scenarios of billing.services.tariffs, .charging and .supply."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

from billing.models import Holiday, Tariff, TariffVersion
from billing.services import charging, supply, tariffs
from billing.services.ledger import wallet_adjust
from meters.models import ServicePoint
from portal.audit.events import AuditEvent
from tests.billing.helpers import hours, supplied
from tests.conftest import World
from tests.factories import SYSTEM

NOW = dt.datetime(2026, 5, 4, 2, 0, tzinfo=dt.UTC)  # Monday 10:00 in Taipei


def _tariff() -> Tariff:
    return Tariff(
        code="res", name="Residential", kind="electricity", currency="TWD", quantity_unit="kWh"
    )


def _version(world: World) -> Callable[[], object]:
    tariff = tariffs.tariff_save(instance=_tariff(), actor=SYSTEM)
    version = TariffVersion(
        tariff=tariff,
        valid_from=dt.date(2026, 1, 1),
        standing_charge=Decimal(1),
        tax_rate=Decimal("0.05"),
        structure={"type": "flat", "rate": "1"},
    )
    return lambda: tariffs.tariff_version_save(instance=version, actor=SYSTEM)


def _assign(world: World) -> Callable[[], object]:
    tariff = tariffs.tariff_save(instance=_tariff(), actor=SYSTEM)
    sp = ServicePoint.objects.create(code="SP-A", kind="electricity")
    return lambda: tariffs.tariff_assign(
        account=world.account_a,
        service_point=sp,
        tariff=tariff,
        valid_from=dt.date(2026, 1, 1),
        actor=SYSTEM,
    )


def _holiday_delete(world: World) -> Callable[[], object]:
    holiday = Holiday.objects.create(day=dt.date(2026, 10, 10), name="National Day")
    return lambda: tariffs.holiday_delete(instance=holiday, actor=SYSTEM)


def _charge(world: World) -> Callable[[], object]:
    account, sp, _ = supplied(world.account_a)
    hours(account, sp, dt.datetime(2026, 5, 2, 16, tzinfo=dt.UTC), [1000] * 24)
    return lambda: charging.prepaid_charge_day(
        day=dt.date(2026, 5, 3), time_zone="Asia/Taipei", actor=SYSTEM, as_of=NOW
    )


def _overdrawn(world: World) -> int:
    _, _, wallet = supplied(world.account_a)
    wallet_adjust(
        wallet=wallet, amount=-100, reason="t", idempotency_key="t", actor=SYSTEM, as_of=NOW
    )
    return wallet.pk


def _disconnect(world: World) -> Callable[[], object]:
    _overdrawn(world)
    return lambda: supply.supply_disconnect_due(as_of=NOW, actor=SYSTEM)


def _reconnect(world: World) -> Callable[[], object]:
    wallet_id = _overdrawn(world)
    supply.supply_disconnect_due(as_of=NOW, actor=SYSTEM)
    from billing.models import Wallet

    wallet = Wallet.objects.get(pk=wallet_id)
    wallet_adjust(
        wallet=wallet, amount=500, reason="t", idempotency_key="u", actor=SYSTEM, as_of=NOW
    )
    return lambda: supply.supply_reconnect_if_restored(wallet_id=wallet_id, actor=SYSTEM, as_of=NOW)


SCENARIOS: dict[str, tuple[Callable[[World], Callable[[], object]], AuditEvent]] = {
    "billing.services.tariffs.tariff_save": (
        lambda w: lambda: tariffs.tariff_save(instance=_tariff(), actor=SYSTEM),
        AuditEvent.TARIFF_SAVED,
    ),
    "billing.services.tariffs.tariff_version_save": (_version, AuditEvent.TARIFF_VERSION_SAVED),
    "billing.services.tariffs.tariff_assign": (_assign, AuditEvent.TARIFF_ASSIGNED),
    "billing.services.tariffs.holiday_save": (
        lambda w: (
            lambda: tariffs.holiday_save(
                instance=Holiday(day=dt.date(2026, 10, 10), name="National Day"), actor=SYSTEM
            )
        ),
        AuditEvent.HOLIDAY_SAVED,
    ),
    "billing.services.tariffs.holiday_delete": (_holiday_delete, AuditEvent.HOLIDAY_DELETED),
    "billing.services.charging.prepaid_charge_day": (_charge, AuditEvent.PREPAID_CHARGED),
    "billing.services.supply.supply_disconnect_due": (
        _disconnect,
        AuditEvent.SUPPLY_DISCONNECT_QUEUED,
    ),
    "billing.services.supply.supply_reconnect_if_restored": (
        _reconnect,
        AuditEvent.SUPPLY_RECONNECT_QUEUED,
    ),
}

EXEMPT: dict[str, str] = {
    "billing.services.charging.prepaid_charge_due": (
        "runs prepaid_charge_day per time zone and the disconnection sweep, which audit"
    ),
    "billing.services.charging.prepaid_charge_run": (
        "records the run's progress (worker bookkeeping) and runs prepaid_charge_due, which "
        "audits what it charges"
    ),
    "billing.services.charging.prepaid_charge_run_resume": (
        "runs the rest of prepaid_charge_run, whose charges prepaid_charge_day audits"
    ),
    "billing.services.supply.disconnection_allowed": "a rule, changes nothing",
}
