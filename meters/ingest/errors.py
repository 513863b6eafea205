"""Row errors as a code plus parameters, rendered in the reader's language.

A parser or a validation statement never writes a sentence: it names what went wrong (a code
from ROW_ERRORS) and the facts (parameters). The sentence is made when someone reads it, in
their language, so the same stored error reads in English in the API and in Chinese on the
imports page. Parameters are plain JSON values; they may quote the file, so they are shown as
text, never as markup.

Adding a check: add its code here with a translatable template, then emit
`RowError(line, "the_code", {"name": value})` (parsers) or the code and a jsonb object of
parameters (SQL). Codes are stable identifiers: the API publishes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

# code -> template with %(name)s placeholders for the parameters.
ROW_ERRORS: dict[str, Promise] = {
    # Written before row errors had codes, or by a parser that only has the library's words.
    "message": _("%(message)s"),
    # ChirpStack
    "chirpstack_not_object": _("the payload is not a JSON object"),
    "chirpstack_no_dev_eui": _("the event has no deviceInfo.devEui"),
    "chirpstack_no_object": _("the uplink has no decoded object: configure the device codec"),
    "chirpstack_readings_not_list": _("object.readings is not a list"),
    "chirpstack_alarms_not_list": _("object.alarms is not a list"),
    "chirpstack_unknown_alarm": _("unknown alarm %(alarm)s"),
    "chirpstack_reading_not_object": _("a reading is not an object"),
    "chirpstack_reading_incomplete": _("a reading needs a numeric value or delta and a unit"),
    # Green Button ESPI
    "espi_unlinked": _("the reading cannot be linked to its UsagePoint and ReadingType"),
    "espi_no_uom": _("its ReadingType has no unit of measure (uom)"),
    "espi_incomplete": _("an IntervalReading without value or start"),
    "espi_unreadable": _("unreadable value or start: %(value)s, %(start)s"),
    # DSMR
    "dsmr_unreadable": _("the telegram could not be read: %(detail)s"),
    "dsmr_no_identifier": _(
        "the telegram has no electricity equipment identifier: name the meter that sent it "
        "(--meter)"
    ),
    "dsmr_no_timestamp": _(
        "this telegram has no timestamp: give the read time (--read-at) or send it through a "
        "head-end that records the delivery time"
    ),
    "dsmr_mbus_placeholder": _(
        "M-Bus channel %(channel)s: no equipment identifier or a placeholder reading; skipped"
    ),
    "dsmr_mbus_unknown_type": _("M-Bus channel %(channel)s: unknown device type %(type)s"),
    "dsmr_bad_checksum": _("the telegram (%(spec)s) fails its CRC check: %(detail)s"),
    "dsmr_no_checksum": _(
        "the telegram has no CRC, which its specification (%(spec)s) requires; if it is a D0 "
        "telegram of another meter, name its specification (--dsmr-spec)"
    ),
    "dsmr_no_value": _("register %(code)s has no numeric value"),
    "dsmr_no_unit": _("register %(code)s states no unit; a unit is never assumed"),
    "dsmr_wrong_unit": _("register %(code)s is in %(unit)s, which is not a unit of %(base)s"),
    # JSON bulk
    "json_unknown_flags": _("unknown flags %(flags)s"),
    # Row checks of every format (the staging guard and resolve()'s SQL); a row reports all
    # of its problems, each with its own code.
    "out_of_range": _("%(field)s is out of range: %(value)s"),
    "negative_register_value": _("a register value cannot be negative: %(value)s"),
    "future_timestamp": _("the timestamp %(timestamp)s is in the future"),
    "timestamp_before_1990": _("a timestamp before 1990 is implausible: %(timestamp)s"),
    "unsafe_text": _(
        "%(field)s %(value)s starts like a spreadsheet formula or holds control characters"
    ),
    "overlapping_period": _("its period overlaps the period of line %(line)s"),
    "unknown_meter": _('unknown meter "%(meter)s"'),
    "no_register": _('meter "%(meter)s" has no register "%(register)s"'),
}


def render(code: str, params: Mapping[str, Any] | None = None) -> str:
    """The error as a sentence in the active language; an unknown code shows as itself with
    its parameters, so that nothing stored is ever hidden."""
    values = {key: _text(value) for key, value in (params or {}).items()}
    template = ROW_ERRORS.get(code)
    if template is None:
        listed = ", ".join(f"{key}={value}" for key, value in sorted(values.items()))
        return f"{code} ({listed})" if listed else code
    try:
        return str(template) % values
    except (KeyError, TypeError, ValueError):
        return str(template)


def _text(value: Any) -> str:
    """A parameter as printable text (it may quote a broken file)."""
    text = value if isinstance(value, str) else repr(value)
    return "".join(c if c.isprintable() else "?" for c in text)[:500]
