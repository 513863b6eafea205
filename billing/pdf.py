"""Bill PDFs: HTML from a template, rendered by WeasyPrint, in English or Traditional Chinese.

The page names "Noto Sans CJK TC" first (Debian's fonts-noto-cjk, installed by
scripts/system-deps.sh): without it WeasyPrint's fallback picks the Japanese glyph variants.
Charts are inline SVG built here (no JavaScript, no network): the period's daily consumption,
estimated days marked, and the totals of the previous periods. Nothing is fetched while
rendering: the URL fetcher refuses every URL.
"""

from __future__ import annotations

import datetime as dt
import importlib
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NoReturn

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import Q, Sum
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.html import escape
from django.utils.translation import gettext as _

from billing.models import Bill, BillLine
from billing.pricing import BASE_PER_UNIT
from meters.models import Direction, ServicePoint
from portal.lib.money import from_minor

LANGUAGES = ("en", "zh-hant")
PREVIOUS_PERIODS = 6
_CHART_W, _CHART_H = 520, 130


@dataclass(frozen=True)
class DayBar:
    day: dt.date
    quantity: Decimal
    estimated: Decimal


@dataclass(frozen=True)
class PeriodTotal:
    period_start: dt.date
    quantity: Decimal
    total: str
    current: bool

    @property
    def shown(self) -> str:
        return _quantity(self.quantity)


def _quantity(value: Decimal) -> str:
    return f"{value.normalize():,f}" if value else "0"


def _money(minor: int, currency: str) -> str:
    return f"{from_minor(minor, currency):,}"


def _daily(bill: Bill) -> list[DayBar]:
    """The bill's consumption per local day of the period (all its service points)."""
    zone = zoneinfo.ZoneInfo(bill.account.time_zone)
    start = dt.datetime.combine(bill.period_start, dt.time(), tzinfo=zone)
    end = dt.datetime.combine(bill.period_end, dt.time(), tzinfo=zone)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT (hour AT TIME ZONE %s)::date, sum(consumption), sum(estimated)
            FROM meters_rolluphourly
            WHERE account_id = %s AND direction <> %s AND hour >= %s AND hour < %s
            GROUP BY 1 ORDER BY 1
            """,
            [bill.account.time_zone, bill.account_id, Direction.EXPORT, start, end],
        )
        found = {day: (q, e) for day, q, e in cursor.fetchall()}
    bars = []
    day = bill.period_start
    while day < bill.period_end:
        quantity, estimated = found.get(day, (0, 0))
        bars.append(
            DayBar(day, Decimal(quantity) / BASE_PER_UNIT, Decimal(estimated) / BASE_PER_UNIT)
        )
        day += dt.timedelta(days=1)
    return bars


def _history(bill: Bill) -> list[PeriodTotal]:
    """This period and up to six before it: consumption and total of each regular bill."""
    bills = list(
        Bill.objects.filter(
            account_id=bill.account_id,
            credit_note_for__isnull=True,
            period_start__lte=bill.period_start,
        )
        .order_by("-period_start")
        .annotate(
            consumed=Sum("lines__quantity", filter=Q(lines__kind=BillLine.Kind.CONSUMPTION)),
        )[: PREVIOUS_PERIODS + 1]
    )
    return [
        PeriodTotal(
            b.period_start,
            getattr(b, "consumed", None) or Decimal(0),
            _money(b.total, b.currency),
            b.period_start == bill.period_start,
        )
        for b in reversed(bills)
    ]


def _bars_svg(values: list[tuple[str, Decimal, Decimal, bool]], title: str) -> str:
    """A bar chart: (label, value, estimated part, highlighted) per bar; labels every so often."""
    top = max((v for _, v, _, _ in values), default=Decimal(0)) or Decimal(1)
    n = max(len(values), 1)
    plot_h = _CHART_H - 28
    step = (_CHART_W - 40) / n
    width = max(step * 0.7, 1.0)  # not money
    every = 1 if n <= 12 else 5
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_CHART_W}" height="{_CHART_H}" '
        f'viewBox="0 0 {_CHART_W} {_CHART_H}" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="10" class="axis">{escape(f"{top.normalize():f}")}</text>',
        f'<line x1="36" y1="{plot_h + 14}" x2="{_CHART_W}" y2="{plot_h + 14}" class="base"/>',
    ]
    for i, (label, value, estimated, highlight) in enumerate(values):
        x = 38 + i * step
        h = float(value / top) * plot_h if value > 0 else 0.0  # not money
        e = float(min(estimated, value) / top) * plot_h if value > 0 else 0.0  # not money
        y = plot_h + 14 - h
        css = "bar now" if highlight else "bar"
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}" class="{css}"/>'
        )
        if e:
            # The estimated share sits on top of the bar, hatched.
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{e:.1f}" '
                'class="estimated"/>'
            )
        if i % every == 0 or i == n - 1:
            parts.append(
                f'<text x="{x:.1f}" y="{_CHART_H - 2}" class="axis">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def bill_pdf_context(*, bill: Bill) -> dict[str, Any]:
    """What the template shows; call inside the language the PDF is rendered in."""
    lines = list(bill.lines.order_by("position"))
    codes = dict(
        ServicePoint.objects.filter(
            pk__in={line.service_point_id for line in lines if line.service_point_id}
        ).values_list("pk", "code")
    )
    units = {line.unit for line in lines if line.kind == BillLine.Kind.CONSUMPTION}
    unit = units.pop() if len(units) == 1 else ""
    rows = []
    for line in lines:
        detail = line.band or (
            ""
            if line.label in ("consumption", "standing charge", "tax", "export credit")
            else line.label
        )
        if line.kind == BillLine.Kind.TAX:
            detail = f"{(line.unit_price * 100).normalize():f} %"
        rows.append(
            {
                "kind": line.get_kind_display(),
                "detail": detail,
                "service_point": codes.get(line.service_point_id or 0, ""),
                "quantity": _quantity(line.quantity),
                "unit": line.unit if line.kind != BillLine.Kind.STANDING else _("days"),
                "unit_price": f"{line.unit_price.normalize():f}",
                "amount": _money(line.amount, bill.currency),
                "estimated": line.estimated,
            }
        )
    daily = _daily(bill)
    history = _history(bill)
    daily_svg = _bars_svg(
        [(f"{b.day.day}", b.quantity, b.estimated, False) for b in daily],
        _("Daily consumption"),
    )
    history_svg = _bars_svg(
        [(f"{p.period_start:%Y-%m}", p.quantity, Decimal(0), p.current) for p in history],
        _("Previous periods"),
    )
    account = bill.account
    return {
        "bill": bill,
        "account": account,
        "organisation": bill.organisation,
        "is_credit_note": bill.credit_note_for_id is not None,
        "credit_note_for": bill.credit_note_for,
        "rows": rows,
        "unit": unit,
        "subtotal": _money(bill.subtotal, bill.currency),
        "tax": _money(bill.tax, bill.currency),
        "total": _money(bill.total, bill.currency),
        "period_last_day": bill.period_end - dt.timedelta(days=1),
        "daily_svg": daily_svg,
        "history_svg": history_svg,
        "history": history,
        "daily_total": _quantity(sum((b.quantity for b in daily), Decimal(0))),
    }


def bill_pdf_html(*, bill: Bill, language: str) -> str:
    """The bill as HTML in `language` (en or zh-hant).

    :raises ValueError: for another language.
    """
    if language not in LANGUAGES:
        raise ValueError(f"bills are rendered in {', '.join(LANGUAGES)}, not {language!r}")
    with translation.override(language):
        context = bill_pdf_context(bill=bill)
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
