"""The one rule for "low credit", in Python and in SQL from the same constants.

A prepaid account is low on credit when its balance is used up (at most zero), or its days of
credit left are under LOW_CREDIT_DAYS whatever its thresholds say, or at most the highest
warning threshold in force for it. Unknown days left (no charges to average) are not low by
themselves. The home panel asks is_low_credit(); the organisation tables filter and sort in
PostgreSQL, so credit_cte writes the same rule with low_credit_sql(). A unit test runs both over
a table of cases so that they cannot drift.
"""

from __future__ import annotations

from decimal import Decimal

# Days of credit under which an account counts as low whatever its thresholds say.
LOW_CREDIT_DAYS = 7


def is_low_credit(*, balance: int, days_left: Decimal | None, threshold: int | None) -> bool:
    """Whether a prepaid account is low on credit (balance in minor units)."""
    if balance <= 0:
        return True
    if days_left is None:
        return False
    return days_left < LOW_CREDIT_DAYS or (threshold is not None and days_left <= threshold)


def low_credit_sql(*, balance: str, days_left: str, threshold: str) -> str:
    """is_low_credit() as a boolean SQL expression over the given column expressions (fixed
    identifiers chosen by the caller, never input); NULLs count as in is_low_credit()."""
    return (
        f"COALESCE({balance} <= 0 OR {days_left} < {int(LOW_CREDIT_DAYS)}"
        f" OR {days_left} <= {threshold}, false)"
    )
