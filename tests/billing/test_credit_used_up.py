"""What a used-up balance tells its members (billing.selectors.credit_used_up) is what the
supply service does: the emergency credit left, the hours a cut may happen in, and the top-up
that brings the supply back."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import override_settings

from billing.models import Wallet
from billing.selectors import CreditState, credit_state, credit_used_up
from billing.services.ledger import wallet_adjust, wallet_update
from billing.services.supply import supply_disconnect_due, supply_reconnect_if_restored
from tests.billing.helpers import supplied
from tests.factories import SYSTEM

pytestmark = pytest.mark.django_db
TAIPEI = dt.timezone(dt.timedelta(hours=8))
MONDAY_10 = dt.datetime(2026, 5, 4, 10, 0, tzinfo=TAIPEI)


def _state(balance: int, *, emergency: int = 300_00, average: int | None = 27_86) -> CreditState:
    return CreditState(
        balance=balance,
        currency="TWD",
        emergency_credit=emergency,
        disconnected=False,
        average_daily_cost=average,
        days_left=None,
    )


def test_credit_above_zero_is_not_used_up() -> None:
    assert credit_used_up(state=_state(1)) is None


@pytest.mark.parametrize(
    ("balance", "left", "days", "to_reconnect"),
    [
        (0, 300_00, "10.7", 0),  # 300.00 / 27.86 a day
        (-261_89, 38_11, "1.3", 0),
        (-300_00, 0, "0.0", 0),  # at the limit: not cut yet, nothing left
        (-350_00, 0, "0.0", 50_00),
    ],
)
def test_the_emergency_credit_left_and_the_top_up_that_restores_the_supply(
    balance: int, left: int, days: str, to_reconnect: int
) -> None:
    used_up = credit_used_up(state=_state(balance))
    assert used_up is not None
    assert used_up.emergency_left == left and str(used_up.emergency_days) == days
    assert used_up.emergency_used_up == (left == 0)
    assert used_up.to_zero == -balance and used_up.to_reconnect == to_reconnect
    assert (used_up.cut_from, used_up.cut_until) == (dt.time(9), dt.time(16))


def test_without_an_average_the_emergency_credit_lasts_an_unknown_time() -> None:
    used_up = credit_used_up(state=_state(-10_00, average=None))
    assert used_up is not None and used_up.emergency_days is None


@override_settings(PREPAID_DISCONNECT_HOURS=(8, 18))
def test_the_hours_are_the_disconnection_settings() -> None:
    used_up = credit_used_up(state=_state(0))
    assert used_up is not None and (used_up.cut_from, used_up.cut_until) == (
        dt.time(8),
        dt.time(18),
    )


def _wallet(balance: int) -> Wallet:
    _, _, wallet = supplied()
    wallet_update(wallet=wallet, emergency_credit=300_00, actor=SYSTEM)
    wallet_adjust(
        wallet=wallet,
        amount=balance,
        reason="test",
        idempotency_key=f"w{wallet.pk}",
        actor=SYSTEM,
        as_of=MONDAY_10,
    )
    wallet.refresh_from_db()
    return wallet


def test_the_words_are_the_supply_services_rule() -> None:
    # While emergency credit is left, the sweep in the working hours cuts nothing.
    inside = _wallet(-299_99)
    used_up = credit_used_up(state=_state(inside.balance))
    assert used_up is not None and used_up.emergency_left == 1
    with time_machine.travel(MONDAY_10, tick=False):
        assert supply_disconnect_due(as_of=MONDAY_10, actor=SYSTEM) == 0
    # Past it, the sweep cuts; the top-up the page names restores it, one unit less does not.
    beyond = _wallet(-350_00)
    with time_machine.travel(MONDAY_10, tick=False):
        assert supply_disconnect_due(as_of=MONDAY_10, actor=SYSTEM) == 1
    beyond.refresh_from_db()
    assert beyond.disconnected_at is not None
    state = credit_state(account_id=beyond.account_id, as_of_day=MONDAY_10.date())
    assert state is not None and state.disconnected
    used_up = credit_used_up(state=state)
    assert used_up is not None and used_up.disconnected and used_up.to_reconnect == 50_00
    night = MONDAY_10.replace(hour=23)
    wallet_adjust(
        wallet=beyond, amount=49_99, reason="a", idempotency_key="a", actor=SYSTEM, as_of=night
    )
    assert not supply_reconnect_if_restored(wallet_id=beyond.pk, actor=SYSTEM, as_of=night)
    wallet_adjust(
        wallet=beyond, amount=1, reason="b", idempotency_key="b", actor=SYSTEM, as_of=night
    )
    assert supply_reconnect_if_restored(wallet_id=beyond.pk, actor=SYSTEM, as_of=night)
