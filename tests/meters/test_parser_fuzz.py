"""Property tests of the format parsers: whatever the bytes, a clear error or sound rows.

Each parser gets thousands of inputs built from the real samples (bytes flipped, cut, repeated,
spliced with noise) and from generated documents. It must either produce readings, events and
row errors of the right types, or refuse the whole file with a BatchError that says something;
any other exception is a crash. PORTAL_FUZZ_EXAMPLES sets the number of examples per parser
(10 000 by default, as docs/QUALITY.md asks).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meters.ingest.formats import chirpstack, dsmr, espi, jsonbulk
from meters.ingest.staging import BatchError, ParsedItem, RowError, StageEvent, StageRow
from meters.models import ImportBatch

DATA = Path(__file__).resolve().parents[1] / "data"
EXAMPLES = int(os.environ.get("PORTAL_FUZZ_EXAMPLES", "10000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
Parser = Callable[[BinaryIO, ImportBatch], Iterator[ParsedItem]]


def _batch() -> ImportBatch:
    received = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    return ImportBatch(received_at=received, read_at=received, format="csv", size=0)


def _check(parser: Parser, content: bytes) -> None:
    refusal = ""
    try:
        items = list(parser(io.BytesIO(content), _batch()))
    except BatchError as error:
        refusal = str(error).strip() or "(empty message)"
        items = []
    assert refusal != "(empty message)", "a BatchError must say what is wrong"
    for item in items:
        assert isinstance(item, StageRow | StageEvent | RowError), type(item)
        if isinstance(item, RowError):
            assert item.message.strip()
        elif isinstance(item, StageRow):
            assert item.ts.tzinfo is not None
            for number in (item.value, item.delta):
                assert number is None or (isinstance(number, Decimal) and number.is_finite())
        else:
            assert item.occurred_at.tzinfo is not None


def _mutated(samples: list[bytes]) -> st.SearchStrategy[bytes]:
    """A sample with a few bytes replaced, removed, duplicated or spliced with noise."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(samples)))
        for _ in range(draw(st.integers(0, 6))):
            if not data:
                break
            at = draw(st.integers(0, len(data) - 1))
            action = draw(st.sampled_from(["flip", "cut", "dup", "noise", "truncate"]))
            if action == "flip":
                data[at] = draw(st.integers(0, 255))
            elif action == "cut":
                del data[at : at + draw(st.integers(1, 40))]
            elif action == "dup":
                data[at:at] = data[at : at + draw(st.integers(1, 80))]
            elif action == "noise":
                data[at:at] = draw(st.binary(min_size=1, max_size=30))
            else:
                del data[at:]
        return bytes(data)

    return build()


def _samples(folder: str, pattern: str) -> list[bytes]:
    return [path.read_bytes() for path in sorted((DATA / folder).glob(pattern))]


@FUZZ
@given(_mutated(_samples("dsmr", "*.txt")) | st.binary(max_size=400))
def test_dsmr_parser_never_crashes(content: bytes) -> None:
    _check(dsmr.parse, content)


# The smaller Green Button samples: the nine-day feed would only slow each example down.
GREEN_BUTTON = [s for s in _samples("greenbutton", "*.xml") if len(s) < 20_000]


@FUZZ
@given(_mutated(GREEN_BUTTON) | st.binary(max_size=400))
def test_espi_parser_never_crashes(content: bytes) -> None:
    _check(espi.parse, content)


# Awkward JSON values, drawn from a fixed list: cheap to generate, so that ten thousand
# examples stay within seconds, and rich in the type confusions a parser must survive.
_AWKWARD: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**63,
    -(10**40),
    1e308,
    -0.0,
    0.25,
    "",
    "x",
    "0",
    "-5",
    "1e999",
    "NaN",
    "Infinity",
    "2026-10-01T10:00:00Z",
    "2026-10-01T10:00:00",
    "2026-13-45T99:00:00Z",
    "1900-01-01T00:00:00+14:00",
    "kWh",
    "m3",
    "L",
    "therm",
    "furlongs",
    "leak",
    "tamper_magnetic",
    "open",
    "closed",
    "import",
    "export",
    "\u0000",
    "é" * 40,
    [],
    {},
    [1, "a"],
    {"value": 1},
    ["leak", 5],
    [[["deep"]]],
]
_value = st.sampled_from(_AWKWARD)


def _object(keys: tuple[str, ...], extra: dict[str, st.SearchStrategy[Any]] | None = None) -> Any:
    return st.fixed_dictionaries({}, optional={**dict.fromkeys(keys, _value), **(extra or {})})


_READING_KEYS = (
    "meter",
    "register",
    "timestamp",
    "time",
    "value",
    "delta",
    "unit",
    "duration",
    "kind",
    "direction",
    "flags",
)


@st.composite
def _chirpstack_lines(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        decoded = draw(
            _object(
                ("alarms", "valve", "value", "delta", "unit", "readings"),
                {"readings": st.lists(_object(_READING_KEYS) | _value, max_size=3)},
            )
            | _value
        )
        payload = draw(
            _object(
                ("time", "batteryLevel", "batteryLevelUnavailable", "fCnt"),
                {
                    "deduplicationId": st.sampled_from(["d1", "d2", ""]),
                    "deviceInfo": _object(
                        ("devEui",),
                        {"devEui": st.sampled_from(["0102030405060708", "01", "", "zz"])},
                    )
                    | _value,
                    "object": st.just(decoded),
                },
            )
            | _value
        )
        event = draw(st.sampled_from(["up", "status", "join", None, 5]))
        message = {"event": event, "payload": payload, "received_at": draw(_value)}
        lines.append(json.dumps(message if draw(st.booleans()) else payload))
    return "\n".join(lines).encode()


CHIRPSTACK_SAMPLE = (
    b'{"event": "up", "payload": {"deduplicationId": "d1", "time": "2026-10-01T10:00:00Z", '
    b'"deviceInfo": {"devEui": "0102030405060708"}, "object": {"readings": [{"value": 12.3, '
    b'"unit": "m3"}], "alarms": ["leak"], "valve": "open"}}}\n'
    b'{"event": "status", "payload": {"deduplicationId": "d1", "time": "2026-10-01T10:00:01Z", '
    b'"deviceInfo": {"devEui": "0102030405060708"}, "batteryLevel": 55.5}}\n'
)
BULK_SAMPLE = (
    b'{"readings": [{"meter": "E1", "timestamp": "2026-10-01T00:15:00Z", "value": 1.5, '
    b'"unit": "kWh"}, {"meter": "W1", "timestamp": "2026-10-01T00:15:00+08:00", "delta": 12, '
    b'"duration": 900, "unit": "L", "flags": ["leak"]}]}'
)


@FUZZ
@given(_chirpstack_lines() | _mutated([CHIRPSTACK_SAMPLE]))
def test_chirpstack_parser_never_crashes(content: bytes) -> None:
    _check(chirpstack.parse, content)


@st.composite
def _bulk_documents(draw: st.DrawFn) -> bytes:
    readings = draw(st.lists(_object(_READING_KEYS) | _value, max_size=4))
    if draw(st.booleans()):
        return json.dumps({"readings": readings}).encode()
    return "\n".join(json.dumps(r) for r in readings).encode()


@FUZZ
@given(_bulk_documents() | _mutated([BULK_SAMPLE]))
def test_json_bulk_parser_never_crashes(content: bytes) -> None:
    _check(jsonbulk.parse, content)


@pytest.mark.parametrize(
    ("parser", "content"),
    [
        (
            jsonbulk.parse,
            b'{"readings": [{"meter": "X", "timestamp": "2026-10-01T10:00:00Z", '
            b'"value": 1e400, "unit": "kWh"}]}',
        ),
        (chirpstack.parse, b'{"deviceInfo": {"devEui": "01"}, "object": {"value": NaN}}'),
        (jsonbulk.parse, b'{"readings": [{"meter": ["a"], "timestamp": 5, "value": "x"}]}'),
    ],
)
def test_known_awkward_inputs(parser: Parser, content: bytes) -> None:
    _check(parser, content)
