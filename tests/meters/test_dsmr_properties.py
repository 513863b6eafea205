"""Telegrams generated from each of dsmr-parser's specifications are stored exactly or refused.

For every spec the test writes telegrams with the energy registers the spec defines, random
values in the units real meters state (Wh/kWh/MWh, varh/kvarh), a correct or a broken CRC, and
checks that each register's value reaches staging with its own unit (so the pipeline converts
it exactly) or the telegram is refused with a row error: never a value in another unit, never
one dropped silently. A few full imports check that the batch always ends in a final state.
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest
from dsmr_parser.parsers import TelegramParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meters.ingest.formats import dsmr
from meters.ingest.staging import RowError, StageRow
from meters.ingest.units import UNITS
from meters.models import ImportBatch
from tests.meters.helpers import run_import

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
RECEIVED = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
UNIT_CHOICES = {"Wh": ("Wh", "kWh", "MWh"), "varh": ("varh", "kvarh")}
# Lines that tell detect_spec which meter family wrote the telegram, by spec.
SPEC_LINES = {
    "V2_2": ["0-0:96.1.1(4B384547303034303436333935353037)"],
    "V3": ["0-0:96.1.1(4B384547303034303436333935353037)", "0-0:96.13.1()"],
    "V4": ["1-3:0.2.8(42)", "0-0:1.0.0(231024153015S)", "0-0:96.1.1(4D31)"],
    "V5": ["1-3:0.2.8(50)", "0-0:1.0.0(231024153015S)", "0-0:96.1.1(4D31)"],
    "BELGIUM_FLUVIUS": ["0-0:96.1.4(50217)", "0-0:96.1.1(4D31)", "0-0:1.0.0(231024153015S)"],
    "LUXEMBOURG_SMARTY": ["0-0:1.0.0(231024153015S)", "0-0:42.0.0(4D31)", "0-0:96.1.1(4D31)"],
    "MSN": ["0-0:1.0.0(231024153015S)", "0-0:42.0.0(4D31)", "0-0:96.1.1(4D31)"],
    "SWEDEN": ["0-0:1.0.0(231024153015S)"],
    "Q3D": ["1-0:0.0.0*255(0272031312565)"],
    "SAGEMCOM_T210_D_R": ["0-0:1.0.0(231024153015S)"],
    "AUSTRIA_ENERGIENETZE_STEIERMARK": ["0-0:1.0.0(231024153015S)"],
    "ISKRA_IE": ["0-0:96.1.0(4D31)", "0-0:1.0.0(231024153015S)"],
    "EON_HUNGARY": ["0-0:1.0.0(231024153015S)", "0-0:42.0.0(4D31)", "0-0:96.1.0(4D31)"],
}


def _energy_attrs(name: str) -> list[str]:
    names = {o["value_name"] for o in dsmr.SPECS[name].objects["objects"]}
    return [attr for attr in dsmr.ENERGY if attr in names]


def _telegram(name: str, values: dict[str, tuple[Decimal, str]], crc: str) -> str:
    lines = ["/TST5\\test", "", *SPEC_LINES[name]]
    for attr, (value, unit) in values.items():
        code = dsmr.ENERGY[attr][0]
        lines.append(f"1-0:{code}({value}*{unit})")
    body = "\r\n".join(lines) + "\r\n!"
    checksum = dsmr.SPECS[name].objects["checksum_support"]
    good = f"{TelegramParser.crc16(body):04X}"
    tail = {"good": good, "broken": f"{(int(good, 16) ^ 0x1):04X}", "none": ""}[crc]
    return body + (tail if checksum else "") + "\r\n"


@st.composite
def telegrams(draw: st.DrawFn, name: str) -> tuple[str, dict[str, tuple[Decimal, str]], str]:
    values = {}
    for attr in _energy_attrs(name):
        if draw(st.booleans()):
            base = dsmr.ENERGY[attr][3]
            unit = draw(st.sampled_from(UNIT_CHOICES[base]))
            value = Decimal(draw(st.integers(0, 10**9))) / Decimal(10) ** draw(st.integers(0, 3))
            values[attr] = (value, unit)
    crc = draw(st.sampled_from(["good", "good", "broken", "none"]))
    return _telegram(name, values, crc), values, crc


def _batch(name: str) -> ImportBatch:
    # The spec is forced: a random subset of registers need not name its meter family.
    return ImportBatch(
        source="command",
        format="dsmr",
        received_at=RECEIVED,
        read_at=RECEIVED,
        meter_serial="M1",
        dsmr_spec=name,
    )


@pytest.mark.parametrize("name", sorted(dsmr.SPECS))
def test_generated_telegrams_are_stored_exactly_or_refused(name: str) -> None:
    @SETTINGS
    @given(telegrams(name))
    def check(case: tuple[str, dict[str, tuple[Decimal, str]], str]) -> None:
        text, values, crc = case
        items = list(dsmr.parse(io.BytesIO(text.encode("ascii")), _batch(name)))
        rows = {i.register_code: i for i in items if isinstance(i, StageRow)}
        errors = [i for i in items if isinstance(i, RowError)]
        checked = dsmr.SPECS[name].objects["checksum_support"]
        if checked and crc != "good":
            assert not rows and errors, (name, crc)
            return
        assert not errors, [e.message for e in errors]
        for attr, (value, unit) in values.items():
            row = rows.pop(dsmr.ENERGY[attr][0])
            # The value and unit of the line, untouched: the pipeline's factor converts it.
            assert (row.value, row.unit) == (value, unit.lower())
            assert row.value is not None
            base, factor = UNITS[row.unit]
            assert base == dsmr.ENERGY[attr][3]
            assert row.value * factor == value * UNITS[unit.lower()][1]
        assert not rows  # nothing the telegram did not state

    check()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["SAGEMCOM_T210_D_R", "EON_HUNGARY", "Q3D", "V5"])
@pytest.mark.parametrize("crc", ["good", "broken"])
def test_a_generated_telegram_import_ends_in_a_final_state(name: str, crc: str) -> None:
    values = {attr: (Decimal("12.345"), "k" + dsmr.ENERGY[attr][3]) for attr in _energy_attrs(name)}
    text = _telegram(name, values, crc)
    batch = run_import(text, "dsmr", read_at=RECEIVED, meter_serial="M1", dsmr_spec=name)
    final = {"done", "done_with_rejections", "rejected", "failed"}
    assert batch.status in final
    if crc == "good" or not dsmr.SPECS[name].objects["checksum_support"]:
        assert (batch.inserted, batch.rejected) == (len(values), 0)
    else:
        assert (batch.inserted, batch.rejected) == (0, 1)
