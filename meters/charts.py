"""Plotly figures of consumption, built in Python and drawn by the vendored plotly.js.

Figures travel to the page as JSON (`json_script`); no inline script, so the CSP holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped]
from django.utils.dates import WEEKDAYS_ABBR
from django.utils.translation import gettext as _

from meters.periods import ConsumptionPoint, Resolution
from meters.selectors.consumption import WeekProfile

# Estimated and suspect data must be visible as such (colour-blind safe pair plus a pattern).
ACTUAL_COLOUR = "#1f6feb"
ESTIMATED_COLOUR = "#d4a72c"
PREVIOUS_COLOUR = "#8c959f"
COST_COLOUR = "#cf222e"
EXPORT_COLOUR = "#1a7f37"
CREDIT_COLOUR = "#116329"
SUSPECT_COLOUR = "#8250df"
# Time-of-use bands: an Okabe-Ito subset, each with its own pattern for colour-blind readers.
BAND_COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9")
BAND_PATTERNS = ("", "/", ".", "x", "-")


def usage_figure(
    points: Sequence[ConsumptionPoint],
    *,
    labels: Sequence[str],
    previous: Sequence[ConsumptionPoint] | None,
    unit: str,
    divisor: int,
    exported: Sequence[ConsumptionPoint] | None = None,
    charges: Sequence[Decimal] | None = None,
    credits: Sequence[Decimal] | None = None,
    currency: str = "",
    resolution: Resolution = Resolution.HOUR,
    step: int = 1,
) -> dict[str, Any]:
    """Bars of measured and estimated imported energy, exported energy as bars below the axis
    (never netted with the import), the previous period as a line, and the charge for the
    import and the credit for the export on a second axis.

    `divisor` turns base units into `unit` (1000: Wh -> kWh, L -> m³). The previous period is
    drawn against the same positions (the n-th interval of each period). `labels` name the
    intervals in the account's local time; `step` intervals make one point (downsampled).
    """
    labels = list(labels)
    actual = [(p.consumption - p.estimated) / divisor for p in points]
    estimated = [p.estimated / divisor for p in points]
    figure = go.Figure()
    figure.add_bar(name=_("Measured"), x=labels, y=actual, marker_color=ACTUAL_COLOUR)
    figure.add_bar(
        name=_("Estimated"),
        x=labels,
        y=estimated,
        marker={"color": ESTIMATED_COLOUR, "pattern": {"shape": "/"}},
    )
    if exported is not None:
        figure.add_bar(
            name=_("Exported"),
            x=labels,
            # Below the axis: energy that left, never subtracted from what came in.
            y=[-p.consumption / divisor for p in exported],
            marker={"color": EXPORT_COLOUR, "pattern": {"shape": "."}},
        )
    suspect = [i for i, p in enumerate(points) if p.suspect]
    if suspect:
        # Suspect readings are left out of the bars; a marker above the bar says so.
        figure.add_scatter(
            name=_("Suspect readings left out"),
            x=[labels[i] for i in suspect],
            y=[points[i].consumption / divisor for i in suspect],
            mode="markers",
            marker={"symbol": "triangle-down", "size": 10, "color": SUSPECT_COLOUR},
        )
    if previous is not None:
        figure.add_scatter(
            name=_("Period before"),
            x=labels[: len(previous)],
            y=[p.consumption / divisor for p in previous[: len(labels)]],
            mode="lines",
            line={"color": PREVIOUS_COLOUR, "dash": "dot"},
        )
    money = charges is not None or credits is not None
    if charges is not None:
        figure.add_scatter(
            name=_("Charge (%(currency)s)") % {"currency": currency},
            x=labels,
            # Drawn, not summed: the exact amounts are in the table and the CSV.
            y=[float(amount) for amount in charges],
            yaxis="y2",
            mode="lines+markers",
            line={"color": COST_COLOUR},
            marker={"symbol": "diamond"},
        )
    if credits is not None:
        figure.add_scatter(
            name=_("Export credit (%(currency)s)") % {"currency": currency},
            x=labels,
            # Below the axis, beside the export it pays for; the hover gives the amount.
            y=[-float(amount) for amount in credits],
            customdata=[f"{amount:,}" for amount in credits],
            hovertemplate="%{customdata}<extra>%{fullData.name}</extra>",
            yaxis="y2",
            mode="lines+markers",
            line={"color": CREDIT_COLOUR, "dash": "dash"},
            marker={"symbol": "circle-open"},
        )
    figure.update_layout(
        barmode="relative",
        margin={"l": 48, "r": 56 if money else 16, "t": 16, "b": 48},
        xaxis=_time_axis(resolution, step, labels),
        yaxis={"title": {"text": unit}},
        legend={"orientation": "h"},
        height=360,
    )
    if money:
        energy, cash = _zero_aligned(
            up=[p.consumption / divisor for p in [*points, *(previous or ())]],
            down=[p.consumption / divisor for p in exported or ()],
            money_up=[float(a) for a in charges or ()],
            money_down=[float(a) for a in credits or ()],
        )
        figure.update_layout(
            yaxis={"title": {"text": unit}, "range": energy},
            yaxis2={
                "title": {"text": currency},
                "overlaying": "y",
                "side": "right",
                "range": cash,
                "showgrid": False,
            },
        )
    data: dict[str, Any] = figure.to_plotly_json()
    return data


_DAY_MS = 86_400_000


def _time_axis(resolution: Resolution, step: int, labels: Sequence[str]) -> dict[str, Any]:
    """Ticks that match the bars: whole days under daily bars, months under monthly ones
    (plotly's own choice puts 12:00 ticks between days). A range with the hour that comes twice
    when the clocks go back is drawn as categories: its two labels name the same wall-clock
    time, which a date axis would draw on top of each other (or drop)."""
    if resolution == Resolution.DAY:
        days = step * max(1, -(-len(labels) // 16))  # at most about 16 labels
        return {"type": "date", "dtick": days * _DAY_MS, "tickformat": "%-d %b"}
    if resolution == Resolution.MONTH:
        return {"type": "date", "dtick": "M1", "tickformat": "%b %Y"}
    if any(len(label) > len("2026-10-25 02:00") for label in labels):
        return {"type": "category", "nticks": 12}
    return {"type": "date"}


def _zero_aligned(
    *, up: list[float], down: list[float], money_up: list[float], money_down: list[float]
) -> tuple[list[float], list[float]]:
    """Ranges of the energy and money axes with their zeros at the same height, so a charge
    sits beside the import above the line and a credit beside the export below it."""
    high = max([*up, 0.0]) or 1.0  # not money: chart geometry
    low = max([*down, 0.0])
    money_high = max([*money_up, 0.0]) or 1.0  # not money: chart geometry
    money_low = max([*money_down, 0.0])
    below = max(low / high, money_low / money_high)  # the share under zero, of the top
    pad = 1.05
    return [-below * high * pad, high * pad], [-below * money_high * pad, money_high * pad]


def bands_figure(
    *, labels: Sequence[str], bands: dict[str, list[int]], unit: str, divisor: int
) -> dict[str, Any]:
    """Consumption split by time-of-use band, stacked per interval."""
    figure = go.Figure()
    for index, name in enumerate(sorted(bands)):
        figure.add_bar(
            name=name,
            x=list(labels),
            y=[value / divisor for value in bands[name]],
            marker={
                "color": BAND_COLOURS[index % len(BAND_COLOURS)],
                "pattern": {"shape": BAND_PATTERNS[index % len(BAND_PATTERNS)]},
            },
        )
    figure.update_layout(
        barmode="stack",
        margin={"l": 48, "r": 16, "t": 16, "b": 48},
        yaxis={"title": {"text": unit}},
        legend={"orientation": "h"},
        height=300,
    )
    data: dict[str, Any] = figure.to_plotly_json()
    return data


# The heatmap's colour key: this many bands from the lowest to the highest average.
HEATMAP_KEY_STEPS = 48


def week_heatmap_figure(profile: WeekProfile, *, unit: str, divisor: int) -> dict[str, Any]:
    """Average consumption per local hour (columns) and weekday (rows, Monday on top).

    Drawn so that the strict CSP holds and the cells stay crisp at any width: with
    `zsmooth="fast"` plotly.js paints one canvas pixel per cell and lets the browser scale the
    image, and the stylesheet (not an inline style, which the CSP refuses) tells the browser to
    scale it without smoothing (static/css/portal.css). plotly.js's own colour bar sets empty
    inline styles, so the colour key is a second, one-column heatmap beside the first, with
    the values on its axis.
    """
    names = [str(WEEKDAYS_ABBR[day]) for day in range(7)]
    z = [[None if v is None else v / divisor for v in row] for row in profile.averages]
    values = [v for row in z for v in row if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 0.0)
    if high <= low:  # one value everywhere: a key still needs a span
        high = low + 1
    step = (high - low) / HEATMAP_KEY_STEPS
    key = [low + step * (i + 0.5) for i in range(HEATMAP_KEY_STEPS)]
    scale = {"colorscale": "Viridis", "zmin": low, "zmax": high, "showscale": False}
    figure = go.Figure()
    figure.add_heatmap(
        z=z,
        x=[f"{hour:02d}:00" for hour in range(24)],
        y=names,
        zsmooth="fast",
        hoverongaps=False,
        hovertemplate="%{y} %{x}<br>%{z:,.3f} " + unit + "<extra></extra>",
        **scale,
    )
    figure.add_heatmap(
        z=[[value] for value in key],
        x=[0],
        y=key,
        xaxis="x2",
        yaxis="y2",
        zsmooth="fast",
        hoverinfo="skip",
        **scale,
    )
    figure.update_layout(
        margin={"l": 48, "r": 64, "t": 16, "b": 48},
        # Hours with no data yet (later this week) are left plain, without grid lines.
        plot_bgcolor="#eaeef2",
        xaxis={"domain": [0, 0.94], "showgrid": False},
        yaxis={"autorange": "reversed", "showgrid": False},
        xaxis2={"domain": [0.97, 1], "visible": False, "fixedrange": True},
        yaxis2={
            "anchor": "x2",
            "side": "right",
            "range": [low, high],
            "fixedrange": True,
            "showgrid": False,
            "ticks": "outside",
            "tickformat": ",.2~f",
            "title": {"text": unit},
        },
        height=300,
    )
    data: dict[str, Any] = figure.to_plotly_json()
    return data
