"""What the consumption charts ask of whoever knows the prices.

Meters knows nothing of tariffs (billing depends on meters, never the reverse), yet a resident's
chart shows what the consumption cost and how it splits across time-of-use bands. The billing
app registers an estimator here when it loads; without one, charts show consumption only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from meters.selectors import ConsumptionPoint, Resolution


@dataclass(frozen=True)
class CostQuery:
    """The buckets of one chart: bucket i runs from `starts[i]` to `starts[i + 1]` (or `end`).

    Starts are aware datetimes in UTC for hours and shorter, local dates for days and months.
    `points` are the chart's own values (one per start) when they are shorter than an hour: an
    hour's share is split among its quarter hours by their consumption. `end` is also the
    moment the costs are taken at: days over by then carry their standing charge.
    """

    account_id: int
    service_point_id: int
    starts: Sequence[dt.datetime | dt.date]
    end: dt.datetime
    resolution: Resolution
    time_zone: str
    points: Sequence[ConsumptionPoint] = ()
    export_points: Sequence[ConsumptionPoint] = ()
    # The range's own start (UTC): a first bucket labelled before it (the first of the month
    # of a range that starts on the 10th) runs from it.
    start: dt.datetime | None = None


@dataclass(frozen=True)
class CostSeries:
    """Per bucket: the charge for imported energy (minor units, tax and standing charges of the
    days that are over included) and the credit for exported energy (minor units, positive),
    never netted; and, for time-of-use tariffs, the consumption per band and bucket in base
    units. A bucket's figures are the sum of its days' (or its share of its day), exactly as
    the ledger and the bills have them."""

    currency: str
    tariff: str
    charges: list[int]
    credits: list[int]
    bands: dict[str, list[int]] = field(default_factory=dict)

    @property
    def has_credit(self) -> bool:
        return any(self.credits)


CostEstimator = Callable[[CostQuery], CostSeries | None]
_estimators: list[CostEstimator] = []


def cost_estimator_register(estimator: CostEstimator) -> None:
    """Called once from the pricing app's AppConfig.ready."""
    if estimator not in _estimators:
        _estimators.append(estimator)


def estimate_costs(query: CostQuery) -> CostSeries | None:
    """The first registered estimator's answer, or None when none knows a price."""
    for estimator in _estimators:
        series = estimator(query)
        if series is not None:
            return series
    return None
