"""The usage page of an account: consumption charts with their costs, a table and a CSV.

It combines meters (consumption) and billing (what it cost), so it lives in the pages app.
"""

from __future__ import annotations

import csv
import datetime as dt
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.http import (
    HttpRequest,
    HttpResponse,
)
from django.utils import timezone
from django.utils.dates import WEEKDAYS
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

from billing.usage_costs import CostQuery, CostSeries, usage_costs
from meters.charts import bands_figure, usage_figure, week_heatmap_figure
from meters.forms import UsageForm
from meters.models import Direction, UtilityKind
from meters.periods import (
    MAX_CHART_POINTS,
    ConsumptionPoint,
    Resolution,
    UsagePeriod,
    custom_period,
    downsample,
    interval_starts,
    on_grid,
    run_length,
    usage_period,
)
from meters.selectors.consumption import (
    WeekProfile,
    consumption_series,
    service_point_base_unit,
    week_profile,
)
from meters.selectors.fleet import service_points_of_account
from meters.units import display_unit
from portal.lib.money import from_minor
from portal.tenancy.scopes import Scope
from portal.tenancy.services.access import csv_export_record
from portal.tenancy.views.base import AccountView

# Each utility's chart headings, so a water chart never speaks of electricity.
PATTERN_TITLES: dict[str, Promise] = {
    UtilityKind.ELECTRICITY: gettext_lazy("Weekly electricity pattern"),
    UtilityKind.WATER: gettext_lazy("Weekly water pattern"),
    UtilityKind.GAS: gettext_lazy("Weekly gas pattern"),
    UtilityKind.HEAT: gettext_lazy("Weekly heat pattern"),
}
# Tables longer than this start collapsed: the chart comes first, the table on request.
OPEN_TABLE_ROWS = 31


class AccountUsageView(AccountView):
    """Consumption charts of an account's supplies, with a table of the same data and a CSV.

    Everything longer than a day is read from the rollups; the period before can be drawn for
    comparison. Hours and days are in the account's time zone. Imported and exported energy
    are separate series with their own totals, and so are the charge for the one and the
    credit for the other.
    """

    required_scope = Scope.METERS_READ
    template_name = "meters/usage.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        account = self.account
        zone = zoneinfo.ZoneInfo(account.time_zone)
        points = list(service_points_of_account(account_id=account.pk))
        choices = [(str(sp.public_id), f"{sp.get_kind_display()} · {sp.code}") for sp in points]
        # `format` picks the response, not what is shown: a CSV link of a first visit (no
        # other parameter) shows the page's defaults.
        params = request.GET.copy()
        params.pop("format", None)
        form = UsageForm(params or None, service_points=choices)
        if params and not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        data = form.cleaned_data if params else {}
        now = timezone.now()
        today = now.astimezone(zone).date()
        span = data.get("range") or "week"
        last_day = data.get("end") or today
        chosen = next(
            (sp for sp in points if str(sp.public_id) == data.get("service_point")),
            points[0] if points else None,
        )
        context: dict[str, Any] = {"form": form, "service_point": chosen, "span": span}
        if chosen is None:
            return self.render_to_response(self.get_context_data(**context))
        if span == "custom":
            period = custom_period(
                first_day=data["start"], last_day=last_day, time_zone=account.time_zone
            )
        else:
            period = usage_period(span=span, last_day=last_day, time_zone=account.time_zone)
        usage = _Usage.build(
            account_id=account.pk,
            service_point_id=chosen.pk,
            period=period,
            time_zone=account.time_zone,
            compare=bool(data.get("compare")),
            as_of=now,
        )
        base = service_point_base_unit(service_point_id=chosen.pk, kind=chosen.kind)
        unit, divisor = display_unit(base)
        if request.GET.get("format") == "csv":
            csv_export_record(
                actor=self.actor(), export="usage", query=request.GET.urlencode(), account=account
            )
            return _usage_csv(usage, unit=unit, zone=zone, name=chosen.code)
        labels = [_local(p.start, zone) for p in usage.series]
        costs = usage.costs
        context.update(
            figure=usage_figure(
                usage.series,
                labels=labels,
                previous=usage.previous,
                exported=usage.exported,
                unit=unit,
                divisor=divisor,
                charges=usage.money(costs.charges) if costs else None,
                credits=(
                    usage.money(costs.credits) if costs is not None and usage.shows_credit else None
                ),
                currency=costs.currency if costs else "",
                resolution=period.resolution,
                step=usage.run,
            ),
            rows=usage.rows(labels),
            column_count=4
            + (1 if usage.exported is not None else 0)
            + (1 if costs else 0)
            + (1 if usage.shows_credit else 0)
            + (len(costs.bands) if costs else 0),
            unit=unit,
            total=usage.total(usage.series),
            export_total=usage.total(usage.exported),
            previous_total=usage.total(usage.previous),
            compared_days=usage.compared_days,
            costs=costs,
            charge_total=usage.money_total(costs.charges) if costs else None,
            credit_total=(
                usage.money_total(costs.credits)
                if costs is not None and usage.shows_credit
                else None
            ),
            shows_export=usage.exported is not None,
            shows_credit=usage.shows_credit,
            table_open=len(usage.series) <= OPEN_TABLE_ROWS,
            run=usage.run,
            resolution=period.resolution,
            csv_query=_with(request, format="csv"),
            pattern_title=PATTERN_TITLES.get(chosen.kind, gettext_lazy("Weekly pattern")),
        )
        if costs and costs.bands:
            context.update(
                bands_figure=bands_figure(
                    labels=labels, bands=costs.bands, unit=unit, divisor=divisor
                ),
                band_names=sorted(costs.bands),
            )
        if usage.profile is not None:
            context.update(
                heatmap_figure=week_heatmap_figure(usage.profile, unit=unit, divisor=divisor),
                heatmap_rows=_heatmap_rows(usage.profile),
                hours=[f"{hour:02d}" for hour in range(24)],
            )
        return self.render_to_response(self.get_context_data(**context))


@dataclass
class _Usage:
    """What the usage page shows of one service point over one period."""

    series: list[ConsumptionPoint]
    exported: list[ConsumptionPoint] | None  # None: the supply exports nothing in the period
    previous: list[ConsumptionPoint] | None
    compared_days: int | None  # a period in progress is compared with its first days only
    run: int  # intervals summed into each shown point (1 unless downsampled)
    costs: CostSeries | None
    profile: WeekProfile | None

    @classmethod
    def build(
        cls,
        *,
        account_id: int,
        service_point_id: int,
        period: UsagePeriod,
        time_zone: str,
        compare: bool,
        as_of: dt.datetime,
    ) -> _Usage:
        def read(start: dt.datetime, end: dt.datetime, direction: str) -> list[ConsumptionPoint]:
            return consumption_series(
                account_id=account_id,
                service_point_id=service_point_id,
                start=start,
                end=end,
                resolution=period.resolution,
                direction=direction,
                time_zone=time_zone,
            )

        # Intervals up to now, each on the chart even without data, to carry its cost.
        shown_end = min(period.end, as_of)
        grid = interval_starts(
            start=period.start, end=shown_end, resolution=period.resolution, time_zone=time_zone
        )
        run = run_length(period, max_points=MAX_CHART_POINTS)

        def shown(points: list[ConsumptionPoint], origin: dt.datetime) -> list[ConsumptionPoint]:
            return downsample(
                points, origin=origin, resolution=period.resolution, size=run, time_zone=time_zone
            )

        raw = on_grid(read(period.start, period.end, Direction.IMPORT), grid)
        raw_export = read(period.start, period.end, Direction.EXPORT)
        export_grid = on_grid(raw_export, grid) if raw_export else None
        series = shown(raw, period.start)
        exported = None
        if export_grid is not None:
            # Point for point with the import, even where one has an interval off the grid.
            by_start = {p.start: p for p in shown(export_grid, period.start)}
            exported = [by_start.get(p.start) or ConsumptionPoint(p.start, 0, 0, 0) for p in series]
        previous, compared_days = None, None
        if compare:
            previous_end = period.previous_end
            if shown_end < period.end:
                # Like for like: the period before up to the same point, whole intervals.
                elapsed = _ceil_to(shown_end, period) - period.start
                previous_end = min(period.previous_end, period.previous_start + elapsed)
                compared_days = -(-elapsed // dt.timedelta(days=1))
            # The same run length as the period shown, so the two line up point for point.
            previous = shown(
                read(period.previous_start, previous_end, Direction.IMPORT), period.previous_start
            )
        costs = (
            usage_costs(
                CostQuery(
                    account_id=account_id,
                    service_point_id=service_point_id,
                    starts=[p.start for p in series],
                    end=shown_end,
                    resolution=period.resolution,
                    time_zone=time_zone,
                    points=raw if run == 1 else (),
                    export_points=export_grid or () if run == 1 else (),
                    start=period.start,
                )
            )
            if series
            else None
        )
        # An hour x weekday pattern needs a week of hours at least; a day has too few.
        profile = (
            week_profile(
                account_id=account_id,
                service_point_id=service_point_id,
                start=period.start,
                end=period.end,
                time_zone=time_zone,
            )
            if period.end - period.start >= dt.timedelta(days=7) and series
            else None
        )
        if profile is not None and not any(v is not None for row in profile.averages for v in row):
            profile = None  # no hourly data in the range: no pattern to draw
        return cls(series, exported, previous, compared_days, run, costs, profile)

    @property
    def shows_credit(self) -> bool:
        return self.costs is not None and (self.exported is not None or self.costs.has_credit)

    def money(self, amounts: list[int]) -> list[Decimal]:
        currency = self.costs.currency if self.costs else ""
        return [from_minor(amount, currency) for amount in amounts]

    def money_total(self, amounts: list[int]) -> Decimal | None:
        if self.costs is None:
            return None
        return from_minor(sum(amounts), self.costs.currency)

    @staticmethod
    def total(points: list[ConsumptionPoint] | None) -> Decimal | None:
        if points is None:
            return None
        return Decimal(sum(p.consumption for p in points)) / 1000

    def rows(self, labels: list[str]) -> list[dict[str, Any]]:
        charges = self.money(self.costs.charges) if self.costs else None
        credits = self.money(self.costs.credits) if self.costs and self.shows_credit else None
        bands = sorted(self.costs.bands.items()) if self.costs else []
        return [
            {
                "start": labels[i],
                "consumption": Decimal(p.consumption) / 1000,
                "estimated": Decimal(p.estimated) / 1000,
                "suspect": p.suspect,
                "exported": (
                    Decimal(self.exported[i].consumption) / 1000
                    if self.exported is not None
                    else None
                ),
                "charge": charges[i] if charges is not None else None,
                "credit": credits[i] if credits is not None else None,
                "bands": [Decimal(values[i]) / 1000 for _name, values in bands],
            }
            for i, p in enumerate(self.series)
        ]


def _ceil_to(moment: dt.datetime, period: UsagePeriod) -> dt.datetime:
    """`moment` moved up to the end of the interval it falls in (the period's resolution)."""
    zone_step = {
        Resolution.QUARTER_HOUR: dt.timedelta(minutes=15),
        Resolution.HOUR: dt.timedelta(hours=1),
    }.get(period.resolution, dt.timedelta(days=1))
    steps = -(-(moment - period.start) // zone_step)
    return period.start + steps * zone_step


def _heatmap_rows(profile: WeekProfile) -> list[dict[str, Any]]:
    return [
        {
            "weekday": WEEKDAYS[weekday],
            "values": [None if v is None else v / 1000 for v in profile.averages[weekday]],
        }
        for weekday in range(7)
    ]


def _local(start: Any, zone: zoneinfo.ZoneInfo) -> str:
    if isinstance(start, dt.datetime):
        local = start.astimezone(zone)
        text = local.strftime("%Y-%m-%d %H:%M")
        # The hour that comes twice when the clocks go back: its offset tells the two apart.
        if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
            text += f" {local.isoformat()[-6:]}"
        return text
    return str(start)


def _with(request: HttpRequest, **params: str) -> str:
    query = request.GET.copy()
    for key, value in params.items():
        query[key] = value
    return query.urlencode()


def _usage_csv(usage: _Usage, *, unit: str, zone: zoneinfo.ZoneInfo, name: str) -> HttpResponse:
    """The shown rows as CSV: the page's table, money as decimals of the currency."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="usage-{name}.csv"'
    writer = csv.writer(response)
    costs = usage.costs
    bands = sorted(costs.bands) if costs else []
    header = [
        "start",
        f"consumption_{unit}",
        f"estimated_{unit}",
        "suspect_readings",
    ]
    if usage.exported is not None:
        header.append(f"export_{unit}")
    if costs is not None:
        header.append(f"charge_{costs.currency}")
        if usage.shows_credit:
            header.append(f"export_credit_{costs.currency}")
    header += [f"band_{band}_{unit}" for band in bands]
    writer.writerow(header)
    for row in usage.rows([_local(p.start, zone) for p in usage.series]):
        line: list[Any] = [
            row["start"],
            f"{row['consumption']:.3f}",
            f"{row['estimated']:.3f}",
            row["suspect"],
        ]
        if row["exported"] is not None:
            line.append(f"{row['exported']:.3f}")
        if row["charge"] is not None:
            line.append(str(row["charge"]))
        if row["credit"] is not None:
            line.append(str(row["credit"]))
        line += [f"{value:.3f}" for value in row["bands"]]
        writer.writerow(line)
    return response
