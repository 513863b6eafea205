"""Bills as people read them: one context, rendered as a PDF (WeasyPrint) and as the bill page.

The context is computed once here and both templates only lay it out, so the page and the PDF
cannot disagree. A bill shows:

- the issuer, the customer, the supply addresses, the account number, the bill number, the
  period, the issue and due dates and the payment reference;
- one section per service point: its utility and unit (kWh, m³), the meter readings at the
  start and the end of the period (the register values at those instants; estimated ones
  marked E; a meter exchanged inside the period shows both meters, each over its own part),
  the consumption billed, the tariff lines and the section's subtotal;
- the lines of no service point (adjustments), the tax once (per rate, on the sum of the
  rounded lines), the totals and how to pay;
- charts per utility in its own unit: each service point's daily consumption and the
  consumption of the previous periods.

The PDF names "Noto Sans CJK TC" first (Debian's fonts-noto-cjk, installed by
scripts/system-deps.sh): without it WeasyPrint's fallback picks the Japanese glyph variants.
Charts are inline SVG built here, styled by presentation attributes only (WeasyPrint does not
apply the page's CSS to inline SVG, which drew every bar black; the bill page's CSP allows no
style attributes). Nothing is fetched while rendering: the URL fetcher refuses every URL.
"""

from __future__ import annotations

import datetime as dt
import importlib
import re
import zoneinfo
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any, NoReturn

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import Sum
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.html import escape
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from billing.models import Bill, BillLine, Tariff
from billing.pricing import BASE_PER_UNIT
from meters.models import Direction, Register, ServicePoint, UtilityKind
from meters.selectors.readings import RegisterInstant, metered_spans, register_values_at
from meters.units import display_unit
from portal.lib.money import format_amount, from_minor, round_money
from portal.lib.periods import local_midnight

LANGUAGES = ("en", "zh-hant")
PREVIOUS_PERIODS = 6
ESTIMATED = "E"
_KIND_ORDER = [kind.value for kind in UtilityKind]
_TIER = re.compile(r"^\d+(\.\d+)?(-\d+(\.\d+)?|\+)$")


# --- Formatting (the same in both languages: grouped thousands, a point for decimals) --------


def _money(minor: int, currency: str) -> str:
    return format_amount(from_minor(minor, currency), currency)


def _quantity(value: Decimal, places: int = 3) -> str:
    return f"{value:,.{places}f}"


def _rate(value: Decimal) -> str:
    return f"{value.normalize():f}"


def _unit(unit: str) -> str:
    """A tariff's or a line's unit as printed: m³ (stored as m3), kWh, days."""
    if unit == "day":
        return _("days")
    labels = {str(choice.value): str(choice.label) for choice in Tariff.QuantityUnit}
    return labels.get(unit, unit)


def _grouped(reference: str) -> str:
    """A long reference in groups of four, as people copy it from paper."""
    return " ".join(reference[i : i + 4] for i in range(0, len(reference), 4))


# --- What the bill shows ---------------------------------------------------------------------


@dataclass(frozen=True)
class LineRow:
    item: str
    quantity: str
    unit: str
    unit_price: str
    amount: str
    estimated: bool


@dataclass(frozen=True)
class ReadingRow:
    """One register of one meter over its part of the period."""

    meter: str
    register: str
    start_at: str  # local date and time, formatted here: templates would convert it again
    start: str
    start_estimated: bool
    end_at: str
    end: str
    end_estimated: bool
    difference: str
    unit: str


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    svg: str
    total: str


@dataclass
class Section:
    """One service point: its utility, readings, consumption, lines and subtotal."""

    service_point_id: int
    code: str
    kind: str
    kind_label: str
    address: str
    unit: str = ""
    readings: list[ReadingRow] = field(default_factory=list)
    several_registers: bool = False
    consumption: str = ""
    export: str = ""
    rows: list[LineRow] = field(default_factory=list)
    subtotal: str = ""
    charts: list[Chart] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.kind_label} · {self.code}"


@dataclass(frozen=True)
class TaxRow:
    rate: str
    base: str
    amount: str


@dataclass(frozen=True)
class PeriodRow:
    period_start: dt.date
    quantities: list[str]  # per utility of the history, in its order
    total: str
    current: bool


def _line_item(line: BillLine, unit: str) -> str:
    """What a line is, in the reader's language: its kind, then its tier, band or label."""
    kind = str(line.get_kind_display())
    kind = kind[:1].upper() + kind[1:]
    if line.kind == BillLine.Kind.ADJUSTMENT:
        return f"{kind} · {line.label}"
    detail = line.band
    if line.kind == BillLine.Kind.CONSUMPTION and line.label not in ("", "consumption"):
        # A season and a tier or band ("summer · peak"); a tier is a block of the month.
        parts = line.label.split(" · ")
        if _TIER.match(parts[-1]):
            parts[-1] = _("block %(range)s %(unit)s") % {"range": parts[-1], "unit": unit}
        detail = " · ".join(parts)
    return f"{kind} · {detail}" if detail else kind


def _line_row(line: BillLine, currency: str) -> LineRow:
    unit = _unit(line.unit)
    standing = line.kind == BillLine.Kind.STANDING
    adjustment = line.kind == BillLine.Kind.ADJUSTMENT
    return LineRow(
        item=_line_item(line, unit),
        quantity="" if adjustment else _quantity(line.quantity, 0 if standing else 3),
        unit="" if adjustment else unit,
        unit_price="" if adjustment else _rate(line.unit_price),
        amount=_money(line.amount, currency),
        estimated=line.estimated,
    )


def _local_date(at: dt.datetime | None, zone: zoneinfo.ZoneInfo) -> str:
    return f"{at.astimezone(zone):%Y-%m-%d}" if at else ""


def _register_label(register: Register) -> str:
    label = (
        pgettext("register", "export")
        if register.direction == Direction.EXPORT
        else pgettext("register", "import")
    )
    return f"{label} T{register.tariff_rate}" if register.tariff_rate else label


def _readings(
    bill: Bill, sections: dict[int, Section], start: dt.datetime, end: dt.datetime
) -> None:
    """Each section's meter readings at the start and end of the account's part of the period
    (supply periods and meter installations cut it; each part is a row per register)."""
    spans = metered_spans(
        account_id=bill.account_id, service_point_ids=list(sections), start=start, end=end
    )
    asked: list[tuple[Any, Register]] = []
    instants: list[RegisterInstant] = []
    for span in spans:
        for register in span.registers:
            asked.append((span, register))
            for at in (span.start, span.end):
                instants.append(
                    RegisterInstant(register.pk, at, span.installed_at, span.removed_at)
                )
    values = register_values_at(instants=instants)
    zone = zoneinfo.ZoneInfo(bill.account.time_zone)
    for n, (span, register) in enumerate(asked):
        first, last = values[2 * n], values[2 * n + 1]
        unit = display_unit(register.unit).unit
        difference = ""
        if first is not None and last is not None:
            used = last.value - first.value
            if used < 0 and register.wrap_value:  # the register rolled over past its dials
                used += register.wrap_value
            if used >= 0:
                difference = _quantity(Decimal(used) / BASE_PER_UNIT)
        section = sections[span.service_point_id]
        section.several_registers |= len(span.registers) > 1
        section.readings.append(
            ReadingRow(
                meter=span.meter_serial,
                register=_register_label(register),
                start_at=f"{span.start.astimezone(zone):%Y-%m-%d %H:%M}",
                start="" if first is None else _quantity(Decimal(first.value) / BASE_PER_UNIT),
                start_estimated=first is not None and first.estimated,
                end_at=f"{span.end.astimezone(zone):%Y-%m-%d %H:%M}",
                end="" if last is None else _quantity(Decimal(last.value) / BASE_PER_UNIT),
                end_estimated=last is not None and last.estimated,
                difference=difference,
                unit=unit,
            )
        )


def _daily(bill: Bill, sections: dict[int, Section], start: dt.datetime, end: dt.datetime) -> None:
    """Each section's consumption per local day of the period, and its export if any: a chart
    in the section's unit, the estimated part of each day drawn apart.

    Read as the bill and the usage page's month read them: the daily rollups where the service
    point keeps the account's time zone (its days are the account's), else its hours summed
    per the account's local day.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT d.service_point_id, d.direction = %(export)s, d.day,
                   sum(d.consumption), sum(d.estimated)
            FROM meters_rollupdaily d JOIN meters_servicepoint sp ON sp.id = d.service_point_id
            WHERE d.account_id = %(account)s AND d.service_point_id = ANY(%(points)s)
              AND sp.time_zone = %(zone)s AND d.day >= %(first)s AND d.day < %(last)s
            GROUP BY 1, 2, 3
            UNION ALL
            SELECT h.service_point_id, h.direction = %(export)s,
                   (h.hour AT TIME ZONE %(zone)s)::date, sum(h.consumption), sum(h.estimated)
            FROM meters_hourly(%(start)s, %(end)s) h
            JOIN meters_servicepoint sp ON sp.id = h.service_point_id
            WHERE h.account_id = %(account)s AND h.service_point_id = ANY(%(points)s)
              AND sp.time_zone <> %(zone)s
            GROUP BY 1, 2, 3
            """,
            {
                "export": Direction.EXPORT,
                "account": bill.account_id,
                "points": list(sections),
                "zone": bill.account.time_zone,
                "first": bill.period_start,
                "last": bill.period_end,
                "start": start,
                "end": end,
            },
        )
        found: dict[tuple[int, bool], dict[dt.date, tuple[int, int]]] = defaultdict(dict)
        for sp_id, export, day, quantity, estimated in cursor.fetchall():
            found[(sp_id, export)][day] = (int(quantity), int(estimated))
    days = [
        bill.period_start + dt.timedelta(days=i)
        for i in range((bill.period_end - bill.period_start).days)
    ]
    for sp_id, section in sections.items():
        unit = section.unit
        for export in (False, True):
            per_day = found.get((sp_id, export))
            if export and not per_day:
                continue
            per_day = per_day or {}
            bars = [
                _Bar(
                    f"{day.day}",
                    Decimal(per_day.get(day, (0, 0))[0]) / BASE_PER_UNIT,
                    Decimal(per_day.get(day, (0, 0))[1]) / BASE_PER_UNIT,
                    False,
                    day.day == 1 or day.day % 5 == 0,
                )
                for day in days
            ]
            title = (
                _("%(utility)s: daily export (%(unit)s)")
                if export
                else _("%(utility)s: daily consumption (%(unit)s)")
            ) % {"utility": section.kind_label, "unit": unit}
            section.charts.append(
                Chart(
                    title,
                    unit,
                    _bar_chart(bars, title=title, unit=unit),
                    _quantity(sum((bar.value for bar in bars), Decimal(0))),
                )
            )


@dataclass(frozen=True)
class HistoryChart:
    kind_label: str
    unit: str
    chart: Chart


def _history(bill: Bill) -> tuple[list[HistoryChart], list[PeriodRow]]:
    """This period and up to six before it: consumption per utility (a chart each, in its
    unit) and each regular bill's total."""
    bills = list(
        Bill.objects.filter(
            account_id=bill.account_id,
            credit_note_for__isnull=True,
            period_start__lte=bill.period_start,
        ).order_by("-period_start")[: PREVIOUS_PERIODS + 1]
    )[::-1]
    quantities: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    units: dict[str, str] = {}
    for bill_id, kind, unit, quantity in (
        BillLine.objects.filter(bill__in=bills, kind=BillLine.Kind.CONSUMPTION)
        .values_list("bill_id", "service_point__kind", "unit")
        .annotate(quantity=Sum("quantity"))
        .order_by()
    ):
        quantities[(bill_id, kind)] += quantity
        units.setdefault(kind, unit)
    kinds = sorted(units, key=_KIND_ORDER.index)
    labels = dict(UtilityKind.choices)
    charts = []
    for kind in kinds:
        unit = _unit(units[kind])
        title = _("%(utility)s: this period and the ones before (%(unit)s)") % {
            "utility": labels[kind],
            "unit": unit,
        }
        bars = [
            _Bar(f"{b.period_start:%Y-%m}", quantities[(b.pk, kind)], Decimal(0), b.pk == bill.pk)
            for b in bills
        ]
        charts.append(
            HistoryChart(
                str(labels[kind]),
                unit,
                Chart(title, unit, _bar_chart(bars, title=title, unit=unit), ""),
            )
        )
    rows = [
        PeriodRow(
            b.period_start,
            [_quantity(quantities[(b.pk, kind)]) for kind in kinds],
            _money(b.total, b.currency),
            b.pk == bill.pk,
        )
        for b in bills
    ]
    return charts, rows


def bill_context(*, bill: Bill) -> dict[str, Any]:
    """Everything the bill's PDF and its page show; call inside the language it is shown in.

    Sections, subtotals, tax and totals come from the bill's stored lines (what was issued);
    meter readings from the readings, charts from the rollups.
    """
    account = bill.account
    currency = bill.currency
    lines = list(bill.lines.order_by("position"))
    zone = zoneinfo.ZoneInfo(account.time_zone)
    start = local_midnight(bill.period_start, zone)
    end = local_midnight(bill.period_end, zone)
    is_credit_note = bill.credit_note_for_id is not None

    points = {
        sp.pk: sp
        for sp in ServicePoint.objects.filter(
            pk__in={line.service_point_id for line in lines if line.service_point_id}
        )
    }
    kinds = dict(UtilityKind.choices)
    ordered = sorted(points.values(), key=lambda sp: (_KIND_ORDER.index(sp.kind), sp.code))
    sections = {
        sp.pk: Section(sp.pk, sp.code, sp.kind, str(kinds[sp.kind]), sp.address) for sp in ordered
    }
    by_section: dict[int, list[BillLine]] = defaultdict(list)
    other: list[BillLine] = []
    taxes: list[BillLine] = []
    for line in lines:
        if line.kind == BillLine.Kind.TAX:
            taxes.append(line)
        elif line.service_point_id in sections:
            by_section[line.service_point_id].append(line)
        else:
            other.append(line)
    for sp_id, section in sections.items():
        section_lines = by_section[sp_id]
        metered = [
            line
            for line in section_lines
            if line.kind in (BillLine.Kind.CONSUMPTION, BillLine.Kind.EXPORT)
        ]
        section.unit = _unit(metered[0].unit) if metered else ""
        consumed = [line.quantity for line in section_lines if line.kind == "consumption"]
        exported = [line.quantity for line in section_lines if line.kind == "export"]
        section.consumption = _quantity(sum(consumed, Decimal(0)))
        section.export = _quantity(sum(exported, Decimal(0))) if exported else ""
        section.rows = [_line_row(line, currency) for line in section_lines]
        section.subtotal = _money(sum(line.amount for line in section_lines), currency)
    if not is_credit_note and sections:
        # A credit note negates a bill's lines: the readings and charts are that bill's.
        _readings(bill, sections, start, end)
        _daily(bill, sections, start, end)
    history_charts, history_rows = ([], []) if is_credit_note else _history(bill)
    tax_rows = [
        TaxRow(
            f"{(line.unit_price * 100).normalize():f} %",
            f"{round_money(line.quantity, currency):,}",
            _money(line.amount, currency),
        )
        for line in taxes
    ]
    organisation = bill.organisation
    return {
        "bill": bill,
        "account": account,
        "organisation": organisation,
        "issuer": organisation.name if organisation else settings.PORTAL_SITE_NAME,
        "is_credit_note": is_credit_note,
        "credit_note_for": bill.credit_note_for,
        "period_last_day": bill.period_end - dt.timedelta(days=1),
        # Dates of instants in the account's zone, formatted here (a template would show them
        # in the server's zone).
        "issued_on": _local_date(bill.issued_at, zone),
        "due_on": _local_date(bill.due_at, zone),
        "paid_on": _local_date(bill.paid_at, zone),
        "time_zone": account.time_zone,
        "addresses": sorted({s.address for s in sections.values() if s.address}),
        "sections": list(sections.values()),
        "other_rows": [_line_row(line, currency) for line in other],
        "other_subtotal": _money(sum(line.amount for line in other), currency),
        "summary": [(s.title, s.subtotal) for s in sections.values()],
        "subtotal": _money(bill.subtotal, currency),
        "tax_rows": tax_rows,
        "tax": _money(bill.tax, currency),
        "total": _money(bill.total, currency),
        "history_charts": history_charts,
        "history_rows": history_rows,
        "history_kinds": [chart.kind_label for chart in history_charts],
        "history_units": [chart.unit for chart in history_charts],
        "payment_reference": _grouped(bill.payment_reference),
        "payee": str(settings.BILLING_PAYEE_NAME),
        "bank_name": settings.BILLING_BANK_NAME,
        "bank_code": settings.BILLING_BANK_CODE,
        "bank_account": settings.BILLING_BANK_ACCOUNT,
        "estimated_mark": ESTIMATED,
        "has_estimated_readings": any(
            row.start_estimated or row.end_estimated
            for s in sections.values()
            for row in s.readings
        ),
    }


# --- Charts ----------------------------------------------------------------------------------

_W, _H = 640, 120
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 6, 14, 20
_FONT = "Noto Sans CJK TC, Noto Sans, sans-serif"
_BAR, _BAR_NOW, _BAR_ESTIMATED = "#5b8cc0", "#1d3f66", "#e7a35b"


@dataclass(frozen=True)
class _Bar:
    label: str
    value: Decimal
    estimated: Decimal
    highlight: bool
    labelled: bool = True


def _nice_ceiling(value: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 x 10^n at or above `value` (axis tops people read)."""
    if value <= 0:
        return Decimal(1)
    power = Decimal(10) ** value.adjusted()
    for step in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        if value <= step * power:
            return step * power
    return 10 * power  # pragma: no cover - the loop ends at 10 x power, above any value


def _n(value: Decimal) -> str:
    """A coordinate: one decimal, never an exponent."""
    return f"{value.quantize(Decimal('0.1'), rounding=ROUND_CEILING):f}"


def _bar_chart(bars: Sequence[_Bar], *, title: str, unit: str) -> str:
    """A bar chart as SVG with fixed pixel sizes and presentation attributes only.

    Bars start at zero; the axis top is a round number at or above the highest bar, labelled
    with the unit; the estimated part of a bar is drawn on its top in another colour.
    """
    top = _nice_ceiling(max((bar.value for bar in bars), default=Decimal(0)))
    plot_w = Decimal(_W - _LEFT - _RIGHT)
    plot_h = Decimal(_H - _TOP - _BOTTOM)
    base_y = Decimal(_TOP) + plot_h
    step = plot_w / max(len(bars), 1)
    width = max(step * Decimal("0.72"), Decimal(1))
    text = f'font-family="{_FONT}" font-size="9" fill="#444"'
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(title)}" '
        'class="bill-chart img-fluid">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (Decimal(0), Decimal("0.5"), Decimal(1)):
        y = base_y - plot_h * fraction
        colour = "#888" if not fraction else "#ddd"
        parts.append(
            f'<line x1="{_LEFT}" y1="{_n(y)}" x2="{_W - _RIGHT}" y2="{_n(y)}" '
            f'stroke="{colour}" stroke-width="0.6"/>'
        )
        tick = (top * fraction).normalize()
        label = f"{tick:,f}" + (f" {unit}" if fraction == 1 else "")
        parts.append(
            f'<text x="{_LEFT - 4}" y="{_n(y + 3)}" text-anchor="end" {text}>{escape(label)}</text>'
        )
    for i, bar in enumerate(bars):
        x = Decimal(_LEFT) + step * i + (step - width) / 2
        height = plot_h * max(bar.value, Decimal(0)) / top
        if height > 0:
            parts.append(
                f'<rect x="{_n(x)}" y="{_n(base_y - height)}" width="{_n(width)}" '
                f'height="{_n(height)}" fill="{_BAR_NOW if bar.highlight else _BAR}"/>'
            )
            estimated = plot_h * min(max(bar.estimated, Decimal(0)), bar.value) / top
            if estimated > 0:
                parts.append(
                    f'<rect x="{_n(x)}" y="{_n(base_y - height)}" width="{_n(width)}" '
                    f'height="{_n(estimated)}" fill="{_BAR_ESTIMATED}"/>'
                )
        if bar.labelled:
            parts.append(
                f'<text x="{_n(x + width / 2)}" y="{_H - 6}" text-anchor="middle" {text}>'
                f"{escape(bar.label)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


# --- Rendering -------------------------------------------------------------------------------


def bill_pdf_html(*, bill: Bill, language: str) -> str:
    """The bill as HTML in `language` (en or zh-hant).

    :raises ValueError: for another language.
    """
    if language not in LANGUAGES:
        raise ValueError(f"bills are rendered in {', '.join(LANGUAGES)}, not {language!r}")
    with translation.override(language):
        context = bill_context(bill=bill)
        context["language"] = "zh-Hant" if language == "zh-hant" else "en"
        return render_to_string("billing/pdf/bill.html", context)


def _no_fetch(url: str, *args: object, **kwargs: object) -> NoReturn:
    raise ValueError(f"bill PDFs fetch nothing ({url})")


def bill_pdf_render(*, bill: Bill, language: str) -> bytes:
    """The bill as a PDF in `language` (en or zh-hant)."""
    html = bill_pdf_html(bill=bill, language=language)
    # Imported here: WeasyPrint loads Pango at import, which only PDF work needs.
    weasyprint: Any = importlib.import_module("weasyprint")
    pdf: bytes = weasyprint.HTML(string=html, url_fetcher=_no_fetch).write_pdf()
    return pdf


def bill_pdf_store(*, bill_id: int, language: str) -> str:
    """Render a bill's PDF into the default storage, replacing an earlier rendering; return
    its storage name."""
    bill = Bill.objects.select_related("account", "organisation", "credit_note_for").get(pk=bill_id)
    name = f"bills/{bill.public_id}/{language}.pdf"
    content = bill_pdf_render(bill=bill, language=language)
    if default_storage.exists(name):
        default_storage.delete(name)
    return default_storage.save(name, ContentFile(content))
