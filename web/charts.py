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
from django.utils.translation import pgettext

from meters.charts import ACTUAL_COLOUR
from meters.models import Direction, UtilityKind
from meters.selectors.subtree import KindTotal
from meters.units import display_unit, kind_base_unit
from portal.lib.periods import next_month
from web.selectors import kind_display_units

# Exported energy (solar feeding the grid) in a colour of its own, apart from the imports.
EXPORT_COLOUR = "#1a7f37"


@dataclass(frozen=True)
class ChartRow:
    label: str
    imported: Decimal
    exported: Decimal | None  # None: nothing beneath the organisation exports this utility


@dataclass(frozen=True)
class RollupChart:
    """One figure and the table that says the same: imports and exports as series of their
    own, each with its own total (never netted, never added together)."""

    element_id: str
    title: str
    unit: str
    figure: dict[str, Any]
    rows: list[ChartRow]
    total_imported: Decimal
    total_exported: Decimal | None

    @property
    def exports(self) -> bool:
        return self.total_exported is not None


@dataclass(frozen=True)
class KindCharts:
    kind: str
    label: str
    daily: RollupChart
    monthly: RollupChart


def _bars(
    periods: Sequence[dt.date],
    imported: Sequence[Decimal],
    exported: Sequence[Decimal] | None,
    *,
    unit: str,
    step: str,
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
    if exported is None:
        series = [(_("Consumption"), imported, ACTUAL_COLOUR)]
    else:
        series = [
            (pgettext("energy direction", "Imported"), imported, ACTUAL_COLOUR),
            (pgettext("energy direction", "Exported"), exported, EXPORT_COLOUR),
        ]
    for name, values, colour in series:
        figure.add_bar(
            name=name,
            x=x,
            # Chart geometry only: the table beside it shows the exact values.
            y=[float(value) for value in values],
            marker_color=colour,
            hovertemplate=f"{name}, {hover}: %{{y:,.1f}} {unit}<extra></extra>",
        )
    figure.update_layout(
        margin={"l": 56, "r": 16, "t": 16, "b": 48},
        xaxis=xaxis,
        yaxis={"title": {"text": unit}, "rangemode": "tozero"},
        # Side by side: an export bar never stands on, or is taken off, an import bar.
        barmode="group",
        showlegend=exported is not None,
        legend={"orientation": "h", "y": -0.25},
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
            current = next_month(current)
    return periods


def _chart(
    element_id: str,
    title: str,
    kind: str,
    totals: dict[str, dict[dt.date, int]],
    *,
    step: str,
    exporting: bool,
) -> RollupChart:
    """One kind's chart over the periods with data in either direction; an export series when
    `exporting` (at zero where nothing was exported)."""
    unit = display_unit(kind_base_unit(kind)).unit
    fmt = "SHORT_DATE_FORMAT" if step == "day" else "YEAR_MONTH_FORMAT"
    imports = totals.get(Direction.IMPORT, {})
    exports = totals.get(Direction.EXPORT, {}) if exporting else None
    # Both series over the same periods: those from the first to the last with any data.
    span = _filled(dict.fromkeys({*imports, *(exports or {})}, 0), step=step)
    rows = [
        ChartRow(
            date_format(period, fmt),
            kind_display_units(kind, imports.get(period, 0)),
            kind_display_units(kind, exports.get(period, 0)) if exports is not None else None,
        )
        for period, _zero in span
    ]
    exported = [row.exported or Decimal(0) for row in rows] if exports is not None else None
    return RollupChart(
        element_id=element_id,
        title=title,
        unit=unit,
        figure=_bars(
            [period for period, _zero in span],
            [row.imported for row in rows],
            exported,
            unit=unit,
            step=step,
        ),
        rows=rows,
        total_imported=sum((row.imported for row in rows), Decimal(0)),
        total_exported=sum(exported, Decimal(0)) if exported is not None else None,
    )


def organisation_usage_charts(
    *, daily: Sequence[KindTotal], monthly: Sequence[KindTotal]
) -> list[KindCharts]:
    """Per utility kind with data: bars of the last days and of the last months, imported and
    exported energy as separate series."""
    by_day: dict[str, dict[str, dict[dt.date, int]]] = defaultdict(lambda: defaultdict(dict))
    by_month: dict[str, dict[str, dict[dt.date, int]]] = defaultdict(lambda: defaultdict(dict))
    for total in daily:
        by_day[total.kind][total.direction][total.period] = total.consumption
    for total in monthly:
        by_month[total.kind][total.direction][total.period] = total.consumption
    charts = []
    for kind in UtilityKind.values:
        if kind not in by_day and kind not in by_month:
            continue
        label = str(UtilityKind(kind).label)
        # Both charts of a kind show exports if either has any, so they read alike.
        exporting = any(Direction.EXPORT in totals.get(kind, {}) for totals in (by_day, by_month))
        charts.append(
            KindCharts(
                kind=kind,
                label=label,
                daily=_chart(
                    f"org-usage-daily-{kind}",
                    _("%(kind)s, last 30 days") % {"kind": label},
                    kind,
                    by_day.get(kind, {}),
                    step="day",
                    exporting=exporting,
                ),
                monthly=_chart(
                    f"org-usage-monthly-{kind}",
                    _("%(kind)s, last 12 months") % {"kind": label},
                    kind,
                    by_month.get(kind, {}),
                    step="month",
                    exporting=exporting,
                ),
            )
        )
    return charts
