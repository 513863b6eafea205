"""Every telegram in tests/data/dsmr/ stores each register exactly as the telegram states it.

The expected values are written by hand from the telegram lines (see tests/data/README.md): the
value times its unit, in the register's base unit (Wh, varh, L), at the telegram's read time in
the meter's country, under the OBIS code the telegram writes.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import connection
from dsmr_parser import telegram_specifications

from meters.ingest.formats import dsmr
from meters.ingest.staging import StageRow
from meters.models import ImportBatch
from tests.meters.helpers import run_import

DATA = Path(__file__).resolve().parents[1] / "data" / "dsmr"
UTC = dt.UTC
READ_AT = dt.datetime(2026, 10, 1, 12, 0, tzinfo=UTC)

Row = tuple[
    str, str, str, str, str, dt.datetime, int
]  # serial, code, direction, unit, obis, ts, value


@dataclass
class Expected:
    spec: str
    zone: str
    rows: list[Row]
    meter: str = ""
    read_at: dt.datetime | None = None
    rejected: int = 0
    options: dict[str, str] = field(default_factory=dict)


def _e(serial: str, at: dt.datetime, regs: list[tuple[str, str, str, int]]) -> list[Row]:
    """Electricity rows of one meter at one time: (code, direction, unit, value)."""
    return [(serial, code, d, unit, f"1-0:{code}", at, value) for code, d, unit, value in regs]


def _rows(*parts: list[Row]) -> list[Row]:
    return [row for part in parts for row in part]


def _ts(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


IMP, EXP, RI, RE = "import", "export", "reactive_import", "reactive_export"
NL_V5 = _ts(2017, 1, 2, 18, 20, second=2)  # 170102192002W: 19:20:02 CET
EXPECTED: dict[str, Expected] = {
    "TELEGRAM_V2_2.txt": Expected(
        "V3",  # dsmr-parser's V3 is its V2_2 (one dict)
        "Europe/Amsterdam",
        _rows(
            _e(
                "00000000000000",
                READ_AT,
                [
                    ("1.8.1", IMP, "Wh", 1001),
                    ("1.8.2", IMP, "Wh", 1001),
                    ("2.8.1", EXP, "Wh", 1001),
                    ("2.8.2", EXP, "Wh", 1001),
                ],
            ),
            # 0-1:24.3.0(161107190000)...(0-1:24.2.1)(m3) (00001.001): no flag, winter, CET
            [("000000000000", "24.2.1", IMP, "L", "0-1:24.2.1", _ts(2016, 11, 7, 18), 1_001)],
        ),
        read_at=READ_AT,
    ),
    "TELEGRAM_V3.txt": Expected(
        "V3",
        "Europe/Amsterdam",
        [
            *_e(
                "K8EG004046395507",
                READ_AT,
                [
                    ("1.8.1", IMP, "Wh", 12345678),
                    ("1.8.2", IMP, "Wh", 12345678),
                    ("2.8.1", EXP, "Wh", 12345678),
                    ("2.8.2", EXP, "Wh", 12345678),
                ],
            ),
            ("2222ABCD123456789", "24.2.1", IMP, "L", "0-1:24.2.1", _ts(2009, 2, 12, 15), 1001),
        ],
        read_at=READ_AT,
    ),
    "TELEGRAM_V4_2.txt": Expected(
        "V4",
        "Europe/Amsterdam",
        _rows(
            _e(
                "3960221976967177082151037881335713",
                _ts(2016, 11, 13, 19, 57, second=57),  # 161113205757W
                [
                    ("1.8.1", IMP, "Wh", 1581123),
                    ("1.8.2", IMP, "Wh", 1435706),
                    ("2.8.1", EXP, "Wh", 0),
                    ("2.8.2", EXP, "Wh", 0),
                ],
            ),
            [
                (
                    "4819243993373755377509728609491464",
                    "24.2.1",
                    IMP,
                    "L",
                    "0-1:24.2.1",
                    _ts(2016, 11, 29, 19),  # 161129200000W
                    981_443,
                )
            ],
        ),
        rejected=0,  # three empty power failure log slots are skipped, not rejected
    ),
    "TELEGRAM_V5.txt": Expected(
        "V5",
        "Europe/Amsterdam",
        [
            *_e(
                "K8EG004046395507",
                NL_V5,
                [
                    ("1.8.1", IMP, "Wh", 4426),
                    ("1.8.2", IMP, "Wh", 2399),
                    ("2.8.1", EXP, "Wh", 2444),
                    ("2.8.2", EXP, "Wh", 0),
                ],
            ),
            (
                "2222ABCD123456789",
                "24.2.1",
                IMP,
                "L",
                "0-1:24.2.1",
                _ts(2017, 1, 2, 15, 10, second=5),
                107,
            ),
        ],
    ),
    "TELEGRAM_V5_TWO_MBUS.txt": Expected(
        "V5",
        "Europe/Amsterdam",
        _rows(
            _e(
                "E0044007382246019",
                _ts(2020, 4, 26, 20, 33, second=25),  # 200426223325S: 22:33:25 CEST
                [
                    ("1.8.1", IMP, "Wh", 2130115),
                    ("1.8.2", IMP, "Wh", 245467),
                    ("2.8.1", EXP, "Wh", 0),
                    ("2.8.2", EXP, "Wh", 0),
                ],
            ),
            [
                (
                    "G0039001936990619",
                    "24.2.1",
                    IMP,
                    "L",
                    "0-2:24.2.1",
                    _ts(2020, 4, 26, 20, 30, second=1),
                    246_138,
                )
            ],
        ),
        rejected=1,  # channel 1: no identifier, placeholder reading
    ),
    "TELEGRAM_FLUVIUS_V171.txt": Expected(
        "BELGIUM_FLUVIUS",
        "Europe/Brussels",
        _rows(
            _e(
                "1SAG3101021605",
                _ts(2020, 5, 12, 11, 54, second=9),  # 200512135409S
                [
                    ("1.8.1", IMP, "Wh", 34),
                    ("1.8.2", IMP, "Wh", 15758),
                    ("2.8.1", EXP, "Wh", 0),
                    ("2.8.2", EXP, "Wh", 11),
                ],
            ),
            [
                (
                    "7FLO2119033733",
                    "24.2.3",
                    IMP,
                    "L",
                    "0-1:24.2.3",
                    _ts(2020, 5, 12, 11, 45, second=58),
                    112_384,
                ),
                (
                    "8SAG1234567890",
                    "24.2.1",
                    IMP,
                    "L",
                    "0-2:24.2.1",
                    _ts(2020, 5, 12, 11, 45, second=58),
                    872_234,
                ),
            ],
        ),
    ),
    "TELEGRAM_SAGEMCOM_T210_D_R.txt": Expected(
        "SAGEMCOM_T210_D_R",
        "Europe/Vienna",
        _e(
            "T210-0001",
            _ts(2023, 10, 24, 13, 30, second=15),  # 231024153015S: 15:30:15 CEST
            [
                ("1.8.0", "import_total", "Wh", 5_017_120),  # (005017120*Wh): not x1000
                ("1.8.1", IMP, "Wh", 3_011_003),
                ("1.8.2", IMP, "Wh", 2_006_117),
                ("2.8.0", "export_total", "Wh", 12_345),
                ("2.8.1", EXP, "Wh", 10_000),
                ("2.8.2", EXP, "Wh", 2_345),
                ("3.8.0", RI, "varh", 1_234),
                ("3.8.1", RI, "varh", 1_000),
                ("3.8.2", RI, "varh", 234),
                ("4.8.0", RE, "varh", 654_321),
                ("4.8.1", RE, "varh", 600_000),
                ("4.8.2", RE, "varh", 54_321),
            ],
        ),
        meter="T210-0001",
    ),
    "TELEGRAM_Q3D_GATEWAY.txt": Expected(
        "Q3D",
        "Europe/Berlin",
        _e(
            "1ESY1160000000",
            READ_AT,
            # 00052185.2825629 kWh = 52,185,282.5629 Wh, stored to the whole Wh
            [("1.8.0", IMP, "Wh", 52_185_283), ("2.8.0", EXP, "Wh", 19_949_322)],
        ),
        read_at=READ_AT,
    ),
    "TELEGRAM_ISKRA_IE.txt": Expected(
        "ISKRA_IE",
        "Europe/Dublin",
        _e(
            "19308001054215",
            _ts(2023, 2, 10, 11, 15, second=30),  # 230210111530W: GMT in Dublin, not CET
            [
                ("1.8.1", IMP, "Wh", 123456),
                ("1.8.2", IMP, "Wh", 789012),
                ("2.8.1", EXP, "Wh", 1100),
                ("2.8.2", EXP, "Wh", 250),
            ],
        ),
    ),
    "TELEGRAM_EON_HUNGARY.txt": Expected(
        "EON_HUNGARY",
        "Europe/Budapest",
        _e(
            "22210015",
            _ts(2023, 2, 9, 13, 15),  # 230209141500W
            [
                ("1.8.0", "import_total", "Wh", 301_549),
                ("1.8.1", IMP, "Wh", 150_000),
                ("1.8.2", IMP, "Wh", 100_500),
                ("1.8.3", IMP, "Wh", 31_000),
                ("1.8.4", IMP, "Wh", 20_049),
                ("2.8.0", "export_total", "Wh", 7_300),
                ("2.8.1", EXP, "Wh", 4_000),
                ("2.8.2", EXP, "Wh", 2_000),
                ("2.8.3", EXP, "Wh", 1_000),
                ("2.8.4", EXP, "Wh", 300),
                ("3.8.0", RI, "varh", 123_456),
                ("4.8.0", RE, "varh", 78_900),
                ("5.8.0", RI, "varh", 100_000),
                ("6.8.0", RI, "varh", 23_456),
                ("7.8.0", RE, "varh", 10_000),
                ("8.8.0", RE, "varh", 68_900),
            ],
        ),
    ),
    "TELEGRAM_SWEDEN.txt": Expected(
        "SWEDEN",
        "Europe/Stockholm",
        _e(
            "SE-ELL-1",
            _ts(2023, 3, 27, 8, 20, second=30),  # 230327102030S
            [
                ("1.8.0", IMP, "Wh", 6678394),
                ("2.8.0", EXP, "Wh", 0),
                ("3.8.0", RI, "varh", 21988),
                ("4.8.0", RE, "varh", 1020971),
            ],
        ),
        meter="SE-ELL-1",
    ),
    "TELEGRAM_LUXEMBOURG_MSN.txt": Expected(
        "MSN",
        "Europe/Luxembourg",
        _e(
            "KAL7005323618",
            _ts(2024, 1, 15, 8, 30),  # 240115093000W
            [
                ("1.8.0", IMP, "Wh", 1234567),
                ("2.8.0", EXP, "Wh", 890),
                ("3.8.0", RI, "varh", 45678),
                ("4.8.0", RE, "varh", 321000),
            ],
        ),
    ),
    "TELEGRAM_LUXEMBOURG_SMARTY.txt": Expected(
        "LUXEMBOURG_SMARTY",
        "Europe/Luxembourg",
        _e(
            "KAL7005323617",
            _ts(2023, 7, 5, 6, 15, second=5),  # 230705081505S
            [("1.8.0", IMP, "Wh", 3_424_116), ("2.8.0", EXP, "Wh", 12_404)],
        ),
    ),
}


def _stored(batch: ImportBatch) -> list[Row]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.serial, r.code, r.direction, r.unit, r.obis, e.ts, e.value "
            "FROM meters_reading e JOIN meters_register r ON r.id = e.register_id "
            "JOIN meters_meter m ON m.id = r.meter_id WHERE e.batch_id = %s "
            "ORDER BY m.serial, r.code, e.ts",
            [batch.pk],
        )
        return list(cursor.fetchall())


def _files() -> list[str]:
    return sorted(p.name for p in DATA.glob("*") if p.is_file())


@pytest.mark.django_db
@pytest.mark.parametrize("name", _files())
def test_every_telegram_file_stores_each_register_exactly(name: str) -> None:
    # A file added without expectations fails here.
    assert name in EXPECTED, f"{name}: add its hand-checked expected values to EXPECTED"
    expected = EXPECTED[name]
    content = (DATA / name).read_bytes()
    batch = run_import(content, "dsmr", read_at=expected.read_at, meter_serial=expected.meter)
    assert batch.rejected == expected.rejected, [e.text for e in batch.row_errors.all()]
    assert _stored(batch) == sorted(expected.rows, key=lambda r: (r[0], r[1], r[5]))
    assert batch.read_time_source == ("read_at" if expected.read_at else "")
    # The spec the telegram names, and the meter's zone on every staged row.
    text = dsmr._crlf(content.decode("latin-1"))
    assert dsmr.detect_spec(text).name == expected.spec
    staged = [i for i in dsmr.parse(io.BytesIO(content), batch) if isinstance(i, StageRow)]
    assert staged and {row.time_zone for row in staged} == {expected.zone}


def test_every_dsmr_parser_specification_is_covered() -> None:
    names = {
        name
        for name, value in vars(telegram_specifications).items()
        if isinstance(value, dict) and "objects" in value
    }
    assert names <= set(dsmr.SPECS), names - set(dsmr.SPECS)
    covered = {e.spec for e in EXPECTED.values()}
    # Only aliases lack a sample of their own: the same dict as one that has one.
    aliases = {"V2_2": "V3", "AUSTRIA_ENERGIENETZE_STEIERMARK": "SAGEMCOM_T210_D_R"}
    assert names - covered == set(aliases)
    for alias, same in aliases.items():
        assert getattr(telegram_specifications, alias) is getattr(telegram_specifications, same)


def _sagemcom(stamp: str, t1: int, t2: int, reactive: int) -> str:
    from dsmr_parser.parsers import TelegramParser

    lines = [
        "/EST5\\253710000_A",
        "",
        f"0-0:1.0.0({stamp})",
        f"1-0:1.8.0({t1 + t2:09d}*Wh)",
        f"1-0:1.8.1({t1:09d}*Wh)",
        f"1-0:1.8.2({t2:09d}*Wh)",
        f"1-0:3.8.0({reactive:09d}*varh)",
        f"1-0:4.8.0({reactive * 2:09d}*varh)",
    ]
    body = "\r\n".join(lines) + "\r\n!"
    return body + f"{TelegramParser.crc16(body):04X}\r\n"


@pytest.mark.django_db
def test_reactive_registers_and_totals_never_reach_rollups_or_bills() -> None:
    from meters.models import ROLLUP_DIRECTIONS, Meter, MeterInstallation
    from meters.selectors.readings import metered_spans
    from tests.factories import make_account

    content = _sagemcom("231024140000S", 1_000, 2_000, 50_000) + _sagemcom(
        "231024150000S", 1_300, 2_200, 90_000
    )
    batch = run_import(content, "dsmr", meter_serial="T210-R")
    assert (batch.status, batch.inserted) == ("done", 10)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT direction, sum(consumption) FROM meters_rolluphourly GROUP BY direction"
        )
        rollups = dict(cursor.fetchall())
    # Only the tariff registers: (1,300 - 1,000) + (2,200 - 2,000) Wh; not 1.8.0 again (x2),
    # not the 40,000 / 80,000 varh of the reactive registers.
    assert rollups == {"import": 500}
    meter = Meter.objects.get(serial="T210-R")
    installation = MeterInstallation.objects.get(meter=meter)
    account = make_account()
    from meters.models import Supply

    Supply.objects.create(
        account=account,
        service_point=installation.service_point,
        start=installation.installed_at,
    )
    spans = metered_spans(
        account_id=account.pk,
        service_point_ids=[installation.service_point_id],
        start=_ts(2023, 10, 1),
        end=_ts(2023, 11, 1),
    )
    billed = {r.code for span in spans for r in span.registers}
    assert billed == {"1.8.1", "1.8.2"}
    assert {r.direction for span in spans for r in span.registers} <= set(ROLLUP_DIRECTIONS)


def _code(batch: ImportBatch) -> list[str]:
    return [e.code for e in batch.row_errors.order_by("line")]


@pytest.mark.django_db
def test_a_telegram_without_identifier_needs_the_meter() -> None:
    content = (DATA / "TELEGRAM_SAGEMCOM_T210_D_R.txt").read_bytes()
    bare = run_import(content, "dsmr")
    assert (bare.inserted, bare.rejected, _code(bare)) == (0, 1, ["dsmr_no_identifier"])
    assert "--meter" in bare.row_errors.get().text
    named = run_import(content, "dsmr", meter_serial="T210-0002")
    assert (named.inserted, named.rejected, named.meter_serial) == (12, 0, "T210-0002")


@pytest.mark.django_db
def test_a_d0_telegram_takes_the_read_time_given_or_the_delivery_time_of_a_live_source() -> None:
    content = (DATA / "TELEGRAM_Q3D_GATEWAY.txt").read_bytes()
    from_file = run_import(content, "dsmr")
    assert (from_file.inserted, _code(from_file)) == (0, ["dsmr_no_timestamp"])
    received = dt.datetime(2026, 11, 1, 10, 0, 5, tzinfo=UTC)
    run_import(content, "dsmr", read_at=READ_AT)  # registers the meter
    live = run_import(
        content,
        "dsmr",
        source=ImportBatch.Source.MQTT,
        received=received,
        register_meters=False,
        reprocess=True,
    )
    assert (live.inserted, live.rejected, live.read_time_source) == (2, 0, "received_at")
    assert {row[5] for row in _stored(live)} == {received}


def _recrc(text: str) -> str:
    """The telegram with its CRC computed again (after a line was changed)."""
    from dsmr_parser.parsers import TelegramParser

    body = text[: text.index("!") + 1]
    return body + f"{TelegramParser.crc16(body):04X}\r\n"


@pytest.mark.django_db
def test_a_live_telegram_far_from_its_delivery_time_is_flagged_clock_skew() -> None:
    from meters.models import Rule

    original = (DATA / "TELEGRAM_LUXEMBOURG_SMARTY.txt").read_bytes().decode("ascii")
    run_import(original, "dsmr")  # registers the meter; a file import has no delivery time

    def live(stamp: str, received: dt.datetime) -> list[int]:
        text = _recrc(original.replace("230705081505S", stamp))
        batch = run_import(
            text, "dsmr", source=ImportBatch.Source.MQTT, register_meters=False, received=received
        )
        assert batch.inserted == 2
        with connection.cursor() as cursor:
            cursor.execute("SELECT flags FROM meters_reading WHERE batch_id = %s", [batch.pk])
            return [flags & Rule.CLOCK_SKEW for (flags,) in cursor.fetchall()]

    # Read 09:15:05 local (07:15:05 UTC), delivered at 09:00 UTC: the meter's clock is off.
    assert all(live("230705091505S", dt.datetime(2023, 7, 5, 9, 0, tzinfo=UTC)))
    # Read 10:15:05 local (08:15:05 UTC), delivered 25 s later: in time.
    assert not any(live("230705101505S", dt.datetime(2023, 7, 5, 8, 15, 30, tzinfo=UTC)))


def _v5(lines: list[str], crc: str = "good") -> str:
    from dsmr_parser.parsers import TelegramParser

    head = ["/ISk5\\2MT382-1000", "", "1-3:0.2.8(50)", "0-0:1.0.0(170102192002W)"]
    body = "\r\n".join([*head, "0-0:96.1.1(4B384547303034303436333935353037)", *lines]) + "\r\n!"
    good = TelegramParser.crc16(body)
    tail = {"good": f"{good:04X}", "broken": f"{good ^ 1:04X}", "none": ""}[crc]
    return body + tail + "\r\n"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "codes"),
    [
        (_v5(["1-0:1.8.1(000004.426*kWh)"], crc="none"), ["dsmr_no_checksum"]),
        (_v5(["1-0:1.8.1(000004.426*kWh)"], crc="broken"), ["dsmr_bad_checksum"]),
        (_v5(["1-0:1.8.1(000004.426*kvarh)"]), ["dsmr_wrong_unit"]),
        (_v5(["1-0:1.8.1(000004.426)"]), ["dsmr_no_unit"]),
        (_v5(["1-0:3.8.0(000004.426*kWh)", "1-0:1.8.1(1.5*MWh)"]), []),
    ],
)
def test_telegrams_that_cannot_be_stored_exactly_are_refused_with_a_reason(
    text: str, codes: list[str]
) -> None:
    batch = run_import(text, "dsmr")
    assert _code(batch) == codes
    if not codes:
        # 3.8.0 is not in DSMR 5 (not read); 1.5 MWh = 1,500,000 Wh exactly.
        assert [(r[1], r[6]) for r in _stored(batch)] == [("1.8.1", 1_500_000)]


@pytest.mark.django_db
def test_the_command_takes_the_meter_and_a_forced_spec(tmp_path: Path) -> None:
    import json

    from django.core.management import call_command

    path = tmp_path / "t210.txt"
    path.write_bytes((DATA / "TELEGRAM_SAGEMCOM_T210_D_R.txt").read_bytes())
    out = io.StringIO()
    call_command(
        "import_readings",
        str(path),
        "--inline",
        "--register-meters",
        "--meter",
        "T210-CMD",
        "--dsmr-spec",
        "AUSTRIA_ENERGIENETZE_STEIERMARK",
        stdout=out,
    )
    counts = json.loads(out.getvalue())
    assert (counts["status"], counts["inserted"], counts["rejected"]) == ("done", 12, 0)
    batch = ImportBatch.objects.get(public_id=counts["batch"])
    assert (batch.meter_serial, batch.dsmr_spec) == ("T210-CMD", "AUSTRIA_ENERGIENETZE_STEIERMARK")


@pytest.mark.parametrize(
    ("code", "params"),
    [
        ("dsmr_no_identifier", {}),
        ("dsmr_bad_checksum", {"spec": "V5", "detail": "x"}),
        ("dsmr_no_checksum", {"spec": "V5"}),
        ("dsmr_no_value", {"code": "1.8.1"}),
        ("dsmr_no_unit", {"code": "1.8.1"}),
        ("dsmr_wrong_unit", {"code": "1.8.1", "unit": "kvarh", "base": "Wh"}),
    ],
)
def test_the_dsmr_row_errors_read_in_traditional_chinese(code: str, params: dict[str, str]) -> None:
    from django.utils import translation

    from meters.ingest.errors import render

    english = render(code, params)
    with translation.override("zh-hant"):
        chinese = render(code, params)
    assert chinese != english and "%(" not in chinese
    assert all(value in chinese for value in params.values())


def test_gateway_lines_between_telegrams_are_skipped_but_not_text_before_the_first() -> None:
    from meters.ingest.staging import BatchError

    q3d = (DATA / "TELEGRAM_Q3D_GATEWAY.txt").read_bytes()
    assert b"gateway:" in q3d.split(b"!", 1)[1]
    two = list(dsmr.split_telegrams(io.BytesIO(q3d + q3d)))
    assert [line for line, _ in two] == [1, 15]
    assert all(text.rstrip().endswith("!") for _, text in two)
    with pytest.raises(BatchError, match="before the first telegram header"):
        list(dsmr.split_telegrams(io.BytesIO(b"gateway: hello\r\n" + q3d)))
