"""The upload form of the portal's import pages."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from meters.ingest.formats import format_for_name
from meters.ingest.formats.dsmr import SPEC_CHOICES
from meters.models import ImportBatch
from meters.periods import MAX_CUSTOM_DAYS


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label=_("File"),
        help_text=_(
            "CSV, DSMR P1 telegrams (.txt/.dsmr), Green Button XML, ChirpStack event lines "
            "(.ndjson) or the JSON bulk format."
        ),
    )
    format = forms.ChoiceField(
        label=_("Format"),
        choices=[("", _("from the file name")), *ImportBatch.Format.choices],
        required=False,
    )
    read_at = forms.DateTimeField(
        label=_("Read time (telegrams without a timestamp)"),
        required=False,
        help_text=_("Those telegrams carry no time: give when they were read, with an offset."),
        widget=forms.DateTimeInput(attrs={"placeholder": "2026-03-01T00:15:00+08:00"}),
    )
    meter_serial = forms.CharField(
        label=_("Meter (DSMR telegrams without an identifier)"),
        max_length=64,
        required=False,
        help_text=_("Serial of the meter that sent the telegrams, e.g. a Sagemcom T210-D-r."),
    )
    dsmr_spec = forms.ChoiceField(
        label=_("DSMR telegram specification"),
        choices=[("", _("from each telegram")), *((name, name) for name in SPEC_CHOICES)],
        required=False,
    )

    def clean_file(self) -> UploadedFile:
        upload: UploadedFile = self.cleaned_data["file"]
        if upload.size is not None and upload.size > settings.PORTAL_IMPORT_MAX_UPLOAD:
            raise forms.ValidationError(
                _("The file is larger than %(limit)s. Split it, or ask the utility to import it.")
                % {"limit": filesizeformat(settings.PORTAL_IMPORT_MAX_UPLOAD)}
            )
        return upload

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload = data.get("file")
        if upload is not None and not data.get("format"):
            fmt = format_for_name(upload.name or "")
            if fmt is None:
                self.add_error("format", _("Choose the format: the file name does not tell."))
            else:
                data["format"] = fmt
        return data


# Days a chart may show: beyond them there is no data, and far enough out the date
# arithmetic overflows.
FIRST_DAY = dt.date(2000, 1, 1)
LAST_DAY = dt.date(2100, 1, 1)


class UsageForm(forms.Form):
    """What a consumption chart shows: a service point, a range ending on a day, a comparison.

    The resolution follows the range (a day in 15 minutes, a week in hours, a month in days, a
    year in months), so a chart never has more than a few hundred points.
    """

    RANGES = (
        ("day", _("Day")),
        ("week", _("Week")),
        ("month", _("Month")),
        ("year", _("Year")),
        ("custom", _("Custom")),
    )

    # Without one, the page shows the account's first supply.
    service_point = forms.ChoiceField(
        label=_("Supply"), required=False, widget=forms.Select(attrs={"class": "form-select"})
    )
    range = forms.ChoiceField(
        label=_("Range"),
        choices=RANGES,
        initial="week",
        widget=forms.Select(attrs={"class": "form-select"}),
    )
    start = forms.DateField(
        label=_("From"),
        widget=forms.DateInput(attrs={"type": "date", "class": "form-control"}),
        required=False,
        help_text=_("For a custom range."),
    )
    end = forms.DateField(
        label=_("Up to"),
        widget=forms.DateInput(attrs={"type": "date", "class": "form-control"}),
        required=False,
    )
    compare = forms.BooleanField(
        label=_("Compare with the period before"),
        required=False,
        widget=forms.CheckboxInput(attrs={"class": "form-check-input"}),
    )

    def __init__(self, *args: Any, service_points: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["service_point"]
        assert isinstance(field, forms.ChoiceField)  # noqa: S101 - declared above
        field.choices = service_points
        for name, each in self.fields.items():
            if each.help_text:
                each.widget.attrs["aria-describedby"] = f"id_{name}_help"

    def full_clean(self) -> None:
        super().full_clean()
        # Screen readers announce a field's errors with the field.
        for name in self.errors:
            if name in self.fields:
                widget = self.fields[name].widget
                widget.attrs["aria-invalid"] = "true"
                described = widget.attrs.get("aria-describedby", "")
                widget.attrs["aria-describedby"] = f"{described} id_{name}_errors".strip()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in ("start", "end"):
            day = data.get(name)
            if day is not None and not FIRST_DAY <= day <= LAST_DAY:
                self.add_error(
                    name,
                    _("Choose a day between %(first)s and %(last)s.")
                    % {"first": FIRST_DAY.isoformat(), "last": LAST_DAY.isoformat()},
                )
                data.pop(name, None)
        if data.get("range") != "custom":
            return data
        start, end = data.get("start"), data.get("end")
        if start is None:
            self.add_error("start", _("A custom range needs a first day."))
        if end is None:
            self.add_error("end", _("A custom range needs a last day."))
        if start is not None and end is not None:
            if start > end:
                self.add_error("start", _("The first day must not be after the last day."))
            elif (end - start).days + 1 > MAX_CUSTOM_DAYS:
                self.add_error(
                    "start",
                    _("A custom range is at most %(days)s days long.") % {"days": MAX_CUSTOM_DAYS},
                )
        return data
