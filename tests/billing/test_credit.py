"""billing.credit: one "low credit" rule, the same in Python and in SQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from billing.credit import LOW_CREDIT_DAYS, is_low_credit, low_credit_sql

# (balance, days left, threshold, low?)
CASES: list[tuple[int, Decimal | None, int | None, bool]] = [
    (0, None, None, True),  # used up, whatever else
    (-500, Decimal("30"), 0, True),
    (1000, None, 7, False),  # no charges to average: not low by itself
    (1000, Decimal("6.9"), 0, True),  # under LOW_CREDIT_DAYS
    (1000, Decimal(LOW_CREDIT_DAYS), 0, False),
    (1000, Decimal("7.0"), 7, True),  # at the threshold
    (1000, Decimal("10.0"), 10, True),
    (1000, Decimal("10.1"), 10, False),
    (1000, Decimal("5"), None, True),
    (1000, Decimal("8"), None, False),
    (1, Decimal("0.0"), 0, True),
]


@pytest.mark.parametrize(("balance", "days_left", "threshold", "low"), CASES)
def test_is_low_credit(
    balance: int, days_left: Decimal | None, threshold: int | None, low: bool
) -> None:
    assert is_low_credit(balance=balance, days_left=days_left, threshold=threshold) is low


@pytest.mark.django_db
def test_the_sql_rule_agrees_with_the_python_rule_on_every_case() -> None:
    expression = low_credit_sql(
        balance="c.balance", days_left="c.days_left", threshold="c.threshold"
    )
    values = ", ".join(["(%s::int, %s::bigint, %s::numeric, %s::int)"] * len(CASES))
    params: list[int | Decimal | None] = []
    for n, (balance, days_left, threshold, _low) in enumerate(CASES):
        params += [n, balance, days_left, threshold]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT c.n, {expression} FROM (VALUES {values}) c(n, balance, days_left, threshold)"  # noqa: S608
            " ORDER BY c.n",
            params,
        )
        in_sql = [low for _n, low in cursor.fetchall()]
    assert in_sql == [is_low_credit(balance=b, days_left=d, threshold=t) for b, d, t, _low in CASES]
