"""Disconnection is never queued at night, at weekends or on public holidays (frozen clocks);
a top-up that restores the balance queues reconnection."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.models import Holiday, Wallet
from billing.services.ledger import wallet_adjust, wallet_update
from billing.services.supply import disconnection_allowed, supply_reconnect_if_restored
from billing.tasks.charging import disconnect_sweep_task
from meters.models import MeterCommand
from tests.billing.helpers import supplied
from tests.factories import SYSTEM

pytestmark = pytest.mark.django_db
TAIPEI = dt.timezone(dt.timedelta(hours=8))


def _overdrawn(amount: int = 500_00) -> Wallet:
    _, _, wallet = supplied()
    wallet_adjust(
        wallet=wallet,
        amount=-amount,
        reason="test shortfall",
        idempotency_key=f"short:{wallet.pk}",
        actor=SYSTEM,
        as_of=dt.datetime(2026, 5, 1, tzinfo=dt.UTC),
    )
    wallet.refresh_from_db()
    return wallet


def _sweep_at(local: dt.datetime) -> int:
    with time_machine.travel(local, tick=False):
        return int(disconnect_sweep_task())


@pytest.mark.parametrize(
    ("local", "why"),
    [
        (dt.datetime(2026, 5, 4, 23, 0, tzinfo=TAIPEI), "night"),
        (dt.datetime(2026, 5, 5, 6, 30, tzinfo=TAIPEI), "early morning"),
        (dt.datetime(2026, 5, 4, 16, 0, tzinfo=TAIPEI), "after 16:00"),
        (dt.datetime(2026, 5, 9, 11, 0, tzinfo=TAIPEI), "Saturday"),
        (dt.datetime(2026, 5, 10, 11, 0, tzinfo=TAIPEI), "Sunday"),
        (dt.datetime(2026, 10, 9, 11, 0, tzinfo=TAIPEI), "public holiday"),
    ],
)
def test_no_disconnection_is_queued_outside_working_hours(local: dt.datetime, why: str) -> None:
    Holiday.objects.create(day=dt.date(2026, 10, 9), name="National Day (observed)")
    wallet = _overdrawn()
    assert _sweep_at(local) == 0, why
    assert not MeterCommand.objects.exists()
    wallet.refresh_from_db()
    assert wallet.disconnected_at is None


def test_the_shortfall_is_acted_on_when_the_window_opens_and_once() -> None:
    wallet = _overdrawn()
    assert _sweep_at(dt.datetime(2026, 5, 9, 11, 0, tzinfo=TAIPEI)) == 0  # Saturday
    monday = dt.datetime(2026, 5, 11, 9, 0, tzinfo=TAIPEI)
    assert _sweep_at(monday) == 1
    assert _sweep_at(monday + dt.timedelta(minutes=15)) == 0
    (command,) = MeterCommand.objects.all()
    assert command.command == MeterCommand.Command.RELAY_DISCONNECT
    wallet.refresh_from_db()
    assert wallet.disconnected_at == monday


def test_emergency_credit_holds_off_disconnection() -> None:
    wallet = _overdrawn(50_00)
    wallet_update(wallet=wallet, emergency_credit=100_00, actor=SYSTEM)
    assert _sweep_at(dt.datetime(2026, 5, 4, 10, 0, tzinfo=TAIPEI)) == 0


def test_a_top_up_that_restores_the_balance_queues_reconnection_at_any_hour() -> None:
    wallet = _overdrawn(500_00)
    _sweep_at(dt.datetime(2026, 5, 4, 10, 0, tzinfo=TAIPEI))
    night = dt.datetime(2026, 5, 4, 23, 30, tzinfo=TAIPEI)
    wallet_adjust(
        wallet=wallet, amount=100_00, reason="part", idempotency_key="p1", actor=SYSTEM, as_of=night
    )
    assert not supply_reconnect_if_restored(wallet_id=wallet.pk, actor=SYSTEM, as_of=night)
    wallet_adjust(
        wallet=wallet, amount=450_00, reason="rest", idempotency_key="p2", actor=SYSTEM, as_of=night
    )
    assert supply_reconnect_if_restored(wallet_id=wallet.pk, actor=SYSTEM, as_of=night)
    commands = list(MeterCommand.objects.order_by("created_at").values_list("command", flat=True))
    assert commands == ["relay_disconnect", "relay_reconnect"]
    wallet.refresh_from_db()
    assert wallet.disconnected_at is None


@settings(max_examples=300, deadline=None)
@given(minutes=st.integers(min_value=0, max_value=365 * 24 * 60))
def test_allowed_moments_are_weekday_working_hours_and_not_holidays(minutes: int) -> None:
    Holiday.objects.get_or_create(day=dt.date(2026, 10, 9), defaults={"name": "National Day"})
    local = dt.datetime(2026, 1, 1, tzinfo=TAIPEI) + dt.timedelta(minutes=minutes)
    if disconnection_allowed(local=local):
        assert local.weekday() < 5
        assert 9 <= local.hour < 16
        assert local.date() != dt.date(2026, 10, 9)
