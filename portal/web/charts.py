"""Plotly figures of an organisation's roll-ups, built in Python and drawn by the vendored
plotly.js (see meters.charts: figure JSON through `json_script`, no inline script)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped]
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from meters.charts import ACTUAL_COLOUR
from meters.models import UtilityKind
from meters.selectors import KindTotal
from portal.web.selectors import KIND_UNITS, in_display_units


@dataclass(frozen=True)
class ChartRow:
    label: str
    value: Decimal


@dataclass(frozen=True)
class RollupChart:
    """One figure and the table that says the same."""

    element_id: str
    title: str
    unit: str
    figure: dict[str, Any]
    rows: list[ChartRow]


@dataclass(frozen=True)
class KindCharts:
    kind: str
    label: str
    daily: RollupChart
    monthly: RollupChart


def _bars(
    periods: Sequence[dt.date], values: Sequence[Decimal], *, unit: str, step: str
) -> dict[str, Any]:
    # Numeric period labels: short, and the same in every language (the table beside the
    # chart names the periods in the reader's language). Days on a date axis, which spaces its
    # ticks; months as categories, so that every month is named.
    if step == "day":
        x = [period.isoformat() for period in periods]
        xaxis: dict[str, Any] = {"type": "date", "tickformat": "%m/%d"}
        hover = "%{x|%Y-%m-%d}"
    else:
        x = [f"{period:%Y-%m}" for period in periods]
        xaxis = {"type": "category"}
        hover = "%{x}"
    figure = go.Figure()
    figure.add_bar(
        name=_("Consumption"),
        x=x,
        # Chart geometry only: the table beside it shows the exact values.
        y=[float(value) for value in values],
        marker_color=ACTUAL_COLOUR,
        hovertemplate=hover + ": %{y:,.1f} " + unit + "<extra></extra>",
    )
    figure.update_layout(
        margin={"l": 56, "r": 16, "t": 16, "b": 48},
        xaxis=xaxis,
        yaxis={"title": {"text": unit}, "rangemode": "tozero"},
        showlegend=False,
        height=260,
    )
    data: dict[str, Any] = figure.to_plotly_json()
    return data


def _filled(totals: dict[dt.date, int], *, step: str) -> list[tuple[dt.date, int]]:
    """The periods from the first to the last with data, the ones between at zero."""
    if not totals:
        return []
    first, last = min(totals), max(totals)
    periods = []
    current = first
    while current <= last:
        periods.append((current, totals.get(current, 0)))
        if step == "day":
            current += dt.timedelta(days=1)
        else:
            current = (current + dt.timedelta(days=32)).replace(day=1)
    return periods


def _chart(
    element_id: str, title: str, kind: str, points: list[tuple[dt.date, int]], *, step: str
) -> RollupChart:
    unit, _divisor = KIND_UNITS.get(kind, ("kWh", 1000))
    fmt = "SHORT_DATE_FORMAT" if step == "day" else "YEAR_MONTH_FORMAT"
    rows = [
        ChartRow(date_format(period, fmt), in_display_units(kind, value))
        for period, value in points
    ]
    return RollupChart(
        element_id=element_id,
        title=title,
        unit=unit,
        figure=_bars([p for p, _v in points], [r.value for r in rows], unit=unit, step=step),
        rows=rows,
    )


def organisation_usage_charts(
    *, daily: Sequence[KindTotal], monthly: Sequence[KindTotal]
) -> list[KindCharts]:
    """Per utility kind with data: bars of the last days and of the last months."""
    by_day: dict[str, dict[dt.date, int]] = defaultdict(dict)
    by_month: dict[str, dict[dt.date, int]] = defaultdict(dict)
    for total in daily:
        by_day[total.kind][total.period] = total.consumption
    for total in monthly:
        by_month[total.kind][total.period] = total.consumption
    charts = []
    for kind in UtilityKind.values:
        if kind not in by_day and kind not in by_month:
            continue
        label = str(UtilityKind(kind).label)
        charts.append(
            KindCharts(
                kind=kind,
                label=label,
                daily=_chart(
                    f"org-usage-daily-{kind}",
                    _("%(kind)s, last 30 days") % {"kind": label},
                    kind,
                    _filled(by_day.get(kind, {}), step="day"),
                    step="day",
                ),
                monthly=_chart(
                    f"org-usage-monthly-{kind}",
                    _("%(kind)s, last 12 months") % {"kind": label},
                    kind,
                    _filled(by_month.get(kind, {}), step="month"),
                    step="month",
                ),
            )
        )
    return charts
