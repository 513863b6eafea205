"""Plotly figures of consumption, built in Python and drawn by the vendored plotly.js.

Figures travel to the page as JSON (`json_script`); no inline script, so the CSP holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped]
from django.utils.translation import gettext as _

from meters.selectors import ConsumptionPoint

# Estimated and suspect data must be visible as such (colour-blind safe pair plus a pattern).
ACTUAL_COLOUR = "#1f6feb"
ESTIMATED_COLOUR = "#d4a72c"
PREVIOUS_COLOUR = "#8c959f"


def usage_figure(
    points: Sequence[ConsumptionPoint],
    *,
    labels: Sequence[str],
    previous: Sequence[ConsumptionPoint] | None,
    unit: str,
    divisor: int,
) -> dict[str, Any]:
    """Bars of actual and estimated consumption, with the previous period as a line.

    `divisor` turns base units into `unit` (1000: Wh -> kWh, L -> m³). The previous period is
    drawn against the same positions (the n-th interval of each period). `labels` name the
    intervals in the account's local time.
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
    if previous is not None:
        figure.add_scatter(
            name=_("Period before"),
            x=labels[: len(previous)],
            y=[p.consumption / divisor for p in previous[: len(labels)]],
            mode="lines",
            line={"color": PREVIOUS_COLOUR, "dash": "dot"},
        )
    figure.update_layout(
        barmode="stack",
        margin={"l": 48, "r": 16, "t": 16, "b": 48},
        yaxis={"title": {"text": unit}},
        legend={"orientation": "h"},
        height=360,
    )
    data: dict[str, Any] = figure.to_plotly_json()
    return data
