"""Residents' data exports: everything an account holds, as one ZIP of CSV files and a Green
Button feed.

- **Request**: `export_request` makes a queued export and queues its task on commit; asking again
  while one is queued or running returns that one (a partial unique constraint keeps one open
  export per account, so two clicks at once cannot make two).
- **Build**: `export_build` (the task's one call) holds a session advisory lock on the export,
  so a redelivered task waits its turn as a no-op; a finished export is left as it is, and a
  crashed one starts again from nothing. The ZIP is written under a temporary name in the
  private export folder and renamed when complete, so nothing half-written is ever handed out.
  Progress (rows written of rows in all) is saved every `PROGRESS_EVERY` rows, in autocommit,
  for the page to poll.
- **What is in it**: readings of the account's registers within its own supply periods (a new
  occupant never sees the previous one's), streamed from PostgreSQL with COPY a register-month
  at a time; daily and hourly consumption from the rollups, which carry the account; bills with
  their lines; the wallet's ledger with the running balance. Text cells that a spreadsheet would
  run as a formula get a leading apostrophe.
- **consumption.xml** is written from the hourly rollups, not from the readings: they are the
  account's consumption as the portal shows and bills it (registers summed per direction,
  meter exchanges joined, suspect readings left out, clipped to the supply periods), on whole
  UTC hours, so the feed imports back into the same hourly figures. Raw readings could not
  round-trip: one ESPI series per direction cannot carry several registers (T1/T2) or a meter
  exchange, and off-grid or cumulative readings are re-judged by the validation rules.
- **Expiry**: a finished export can be downloaded for `EXPORT_LIFETIME`; `exports_sweep` (and
  every new request of the account) deletes the files of expired ones.
- **Audit**: a request, the end of a build (ready or failed) and each download are recorded.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import errno
import io
import logging
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from billing.models import Bill, DataExport, export_storage
from billing.selectors import (
    DAILY_COLUMNS,
    HourlySeries,
    export_bills,
    export_daily_copy,
    export_daily_count,
    export_get_by_id,
    export_hourly_series,
    export_hourly_values,
    export_ledger,
    export_recent_for_account,
    exports_expired_ids,
    exports_open_for_account,
    exports_stalled_ids,
)
from meters.espi_export import EspiSeries, EspiUsagePoint, IntervalValue, espi_write
from meters.selectors.exports import (
    READINGS_COLUMNS,
    export_reading_spans,
    export_readings_copy,
)
from portal.audit.actors import Actor, UserActor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.csvsafe import csv_safe
from portal.lib.money import from_minor
from portal.lib.periods import local_date, local_midnight, month_start, next_month
from portal.tenancy.models import Account

logger = logging.getLogger(__name__)

EXPORT_LIFETIME = dt.timedelta(days=7)
# Rows between two progress saves: often enough for a bar that moves every poll (2 s), seldom
# enough to cost nothing next to the rows themselves.
PROGRESS_EVERY = 5_000
# An export still open this long after its request is handed to a worker again.
STALLED_AFTER = dt.timedelta(minutes=15)
# An export that killed its worker this many times (out of memory, say) fails for good, so the
# account is never stuck with an open export that blocks new requests.
MAX_ATTEMPTS = 3
# A finished export this recent is handed out again instead of building another copy.
REUSE_WITHIN = dt.timedelta(hours=1)
# Leftovers of a worker killed mid-build are removed after this long.
LEFTOVER_AGE = dt.timedelta(days=1)
_LOCK_NAMESPACE = 0x45585054  # "EXPT"; the second key is the export id
_TEMP_PREFIX = ".building-"
HOUR = 3600


# --- Request ---------------------------------------------------------------------------------


@transaction.atomic
def export_request(
    *, account: Account, actor: Actor, as_of: dt.datetime, language: str = "en"
) -> DataExport:
    """Queue an export of all of the account's data; return the open one if there is one."""
    _expire(exports_expired_ids(as_of=as_of, account_id=account.pk))
    existing = exports_open_for_account(account_id=account.pk) or export_recent_for_account(
        account_id=account.pk, since=as_of - REUSE_WITHIN
    )
    if existing is not None:
        # Also the answer to a script asking again and again: one full copy an hour at most.
        return existing
    try:
        with transaction.atomic():
            export = DataExport.objects.create(
                account=account,
                requested_by=actor.user if isinstance(actor, UserActor) else None,
                requested_by_label=actor.label[:254],
                language=language if language in dict(settings.LANGUAGES) else "en",
                created_at=as_of,
            )
    except IntegrityError:
        # Another request of the same account won the race: return its export.
        existing = exports_open_for_account(account_id=account.pk)
        if existing is None:
            raise
        return existing
    audit_record(
        actor=actor,
        event=AuditEvent.DATA_EXPORT_REQUESTED,
        account=account,
        target=export,
        data={"data_export": str(export.public_id), "number": account.number},
    )
    transaction.on_commit(_enqueue(export.pk))
    return export


def export_download_record(*, export: DataExport, actor: Actor) -> None:
    """Record that `actor` downloaded a finished export."""
    with transaction.atomic():
        audit_record(
            actor=actor,
            event=AuditEvent.DATA_EXPORT_DOWNLOADED,
            account=export.account,
            target=export,
            data={
                "data_export": str(export.public_id),
                "number": export.account.number,
                "size": export.size,
            },
        )


# --- Build -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _export_lock(export_id: int) -> Iterator[bool]:
    """Hold a session advisory lock on the export for the build (False: another holds it).

    A session lock, not a transaction one: the build runs in autocommit so that its progress is
    seen while it runs. A worker that dies loses its connection and with it the lock.
    """
    key = [_LOCK_NAMESPACE, export_id % 2**31]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            # A connection that broke took the lock with it; nothing to release then.
            with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)


class _Progress:
    """Rows written so far, saved every PROGRESS_EVERY rows and whenever the part changes."""

    def __init__(self, export_id: int) -> None:
        self.export_id = export_id
        self.total = 0
        self.done = 0
        self.saved = 0
        self.part = ""

    def start(self, total: int) -> None:
        self.total = total
        self._save()

    def enter(self, part: str) -> None:
        self.part = part
        self._save()

    def add(self, rows: int) -> None:
        self.done += rows
        if self.done - self.saved >= PROGRESS_EVERY:
            self._save()

    def _save(self) -> None:
        DataExport.objects.filter(pk=self.export_id).update(
            rows_done=min(self.done, self.total), rows_total=self.total, part=self.part
        )
        self.saved = self.done


def export_build(*, export_id: int, actor: Actor, as_of: dt.datetime) -> DataExport | None:
    """Build (or rebuild from nothing) a queued or running export; None if another worker
    holds it (or it does not exist).

    A finished export is returned untouched. Any failure ends the export as failed with a
    message for the resident (and the traceback in the log), never with a partial file.
    """
    with _export_lock(export_id) as held:
        if not held:
            return None
        export = export_get_by_id(export_id=export_id)
        if export is None or export.finished:
            return export
        if export.attempts >= MAX_ATTEMPTS:
            with translation.override(export.language):
                message = _(
                    "The export could not be built after %(attempts)s attempts. Please ask for "
                    "a new one; if it fails again, contact the utility."
                ) % {"attempts": export.attempts}
            return _finish(export, actor=actor, error=message, progress=_Progress(export.pk))
        DataExport.objects.filter(pk=export.pk).update(
            status=DataExport.Status.RUNNING,
            attempts=F("attempts") + 1,
            started_at=Coalesce(F("started_at"), as_of),
            rows_done=0,
            rows_total=0,
            part="",
            error="",
        )
        export.refresh_from_db()
        storage = export_storage()
        directory = Path(storage.location)
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob(f"{_TEMP_PREFIX}{export.public_id}-*"):
            leftover.unlink(missing_ok=True)  # a crashed attempt's
        handle, temp_name = tempfile.mkstemp(
            dir=directory, prefix=f"{_TEMP_PREFIX}{export.public_id}-", suffix=".zip"
        )
        progress = _Progress(export.pk)
        name = f"{export.public_id}.zip"
        try:
            with os.fdopen(handle, "wb") as raw, translation.override(export.language):
                _write_zip(raw, export, progress, as_of)
                # On disk before it gets its name: after a power cut the name never points
                # at a half-written file.
                raw.flush()
                os.fsync(raw.fileno())
            size = Path(temp_name).stat().st_size
            os.replace(temp_name, directory / name)
            _fsync_directory(directory)
        except Exception as error:
            Path(temp_name).unlink(missing_ok=True)
            # An earlier attempt that crashed after renaming left a whole copy under the name.
            (directory / name).unlink(missing_ok=True)
            logger.exception("data export %s failed while writing %s", export.pk, progress.part)
            with translation.override(export.language):
                message = _failure_message(error, progress.part)
            return _finish(export, actor=actor, error=message, progress=progress)
        export.file.name = name
        export.size = size
        return _finish(export, actor=actor, error=None, progress=progress)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _failure_message(error: Exception, part: str) -> str:
    """What the resident reads: which part failed and the kind of failure; the details (paths,
    SQL) stay in the log."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return _("There was not enough disk space to write the export. Please try again later.")
    return _(
        "Writing %(part)s failed (%(error)s). Nothing was kept; please ask for a new export."
    ) % {"part": part or _("the export"), "error": type(error).__name__}


def _finish(
    export: DataExport, *, actor: Actor, error: str | None, progress: _Progress
) -> DataExport:
    """End the build, ready or failed, with its audit entry. A failed export expires too, so
    that the sweep tidies it away like the others."""
    finished = timezone.now()
    with transaction.atomic():
        export.status = DataExport.Status.DONE if error is None else DataExport.Status.FAILED
        export.error = (error or "")[:2000]
        export.rows_total = progress.total
        export.rows_done = progress.total if error is None else min(progress.done, progress.total)
        export.part = ""
        export.finished_at = finished
        export.expires_at = finished + EXPORT_LIFETIME
        export.save(
            update_fields=[
                "status",
                "file",
                "size",
                "error",
                "part",
                "rows_done",
                "rows_total",
                "finished_at",
                "expires_at",
            ]
        )
        data: dict[str, object] = {
            "data_export": str(export.public_id),
            "number": export.account.number,
            "outcome": export.status,
            "rows": export.rows_done,
            "size": export.size,
        }
        if error is not None:
            data["error"] = error[:500]
        audit_record(
            actor=actor,
            event=AuditEvent.DATA_EXPORT_FINISHED,
            account=export.account,
            target=export,
            data=data,
        )
    return export


def _months(first: dt.datetime, last: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """UTC calendar months [start, end) that together cover [first, last]: one partition of
    the readings table each."""
    start = local_midnight(month_start(local_date(first, "UTC")), "UTC")
    while start <= last:
        end = local_midnight(next_month(start.date()), "UTC")
        yield start, end
        start = end


@contextlib.contextmanager
def _member(archive: zipfile.ZipFile, name: str, as_of: dt.datetime) -> Iterator[IO[bytes]]:
    info = zipfile.ZipInfo(name, date_time=as_of.astimezone(dt.UTC).timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(info, "w", force_zip64=True) as out:
        yield out


@contextlib.contextmanager
def _csv_member(
    archive: zipfile.ZipFile, name: str, as_of: dt.datetime, header: tuple[str, ...]
) -> Iterator[Callable[[Iterable[object]], object]]:
    """A CSV member of the ZIP; yields a function that writes one row, every cell through
    portal.lib.csvsafe (text that would start a formula is quoted, numbers stay numbers)."""
    with _member(archive, name, as_of) as out:
        text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(header)
        yield lambda row: writer.writerow([csv_safe(cell) for cell in row])
        text.flush()
        text.detach()


def _write_zip(raw: IO[bytes], export: DataExport, progress: _Progress, as_of: dt.datetime) -> None:
    account = export.account
    spans = export_reading_spans(account_id=account.pk)
    daily = export_daily_count(account_id=account.pk)
    series = export_hourly_series(account_id=account.pk)
    bills = export_bills(account_id=account.pk)
    currency, ledger = export_ledger(account_id=account.pk)
    bill_rows = sum(max(1, len(bill.lines.all())) for bill in bills)
    progress.start(
        sum(span.rows for span in spans)
        + daily
        + sum(s.rows for s in series)
        + bill_rows
        + len(ledger)
    )
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with _member(archive, "README.txt", as_of) as out:
            out.write(_readme(export, as_of).encode())

        progress.enter("readings.csv")
        with _member(archive, "readings.csv", as_of) as out:
            out.write((",".join(READINGS_COLUMNS) + "\n").encode())
            for span in spans:
                if span.first is None or span.last is None:
                    continue
                for start, end in _months(span.first, span.last):
                    progress.add(export_readings_copy(span=span, start=start, end=end, out=out))

        progress.enter("consumption_daily.csv")
        with _member(archive, "consumption_daily.csv", as_of) as out:
            out.write((",".join(DAILY_COLUMNS) + "\n").encode())
            progress.add(export_daily_copy(account_id=account.pk, out=out))

        progress.enter("consumption.xml")
        with _member(archive, "consumption.xml", as_of) as out:
            espi_write(
                out,
                feed_id=str(export.public_id),
                title=_("Hourly consumption of account %(number)s") % {"number": account.number},
                updated=as_of,
                usage_points=_usage_points(account.pk, series, progress),
                base_url=settings.PORTAL_BASE_URL.rstrip("/") + "/espi/1_1/resource",
                customer=str(account.public_id),
            )

        progress.enter("bills.csv")
        with _csv_member(archive, "bills.csv", as_of, BILLS_COLUMNS) as write:
            for bill in bills:
                rows = _bill_rows(bill)
                for row in rows:
                    write(row)
                progress.add(len(rows))

        progress.enter("ledger.csv")
        with _csv_member(archive, "ledger.csv", as_of, LEDGER_COLUMNS) as write:
            for line in ledger:
                write(
                    [
                        line.entry_id,
                        _iso(line.created_at),
                        line.kind,
                        line.memo,
                        from_minor(line.amount, currency),
                        from_minor(line.balance, currency),
                        currency,
                    ]
                )
            progress.add(len(ledger))


def _usage_points(
    account_id: int, series: list[HourlySeries], progress: _Progress
) -> Iterator[EspiUsagePoint]:
    by_point: dict[int, list[HourlySeries]] = {}
    for item in series:
        by_point.setdefault(item.service_point_id, []).append(item)
    for items in by_point.values():
        first = items[0]
        yield EspiUsagePoint(
            usage_point_id=str(first.service_point_public_id),
            title=first.service_point,
            kind=first.kind,
            series=[
                EspiSeries(
                    direction=item.direction,
                    unit=item.unit,
                    interval=HOUR,
                    blocks=_hour_blocks(account_id, item, progress),
                )
                for item in items
            ],
        )


def _hour_blocks(
    account_id: int, series: HourlySeries, progress: _Progress
) -> Iterator[list[IntervalValue]]:
    """One IntervalBlock per UTC month, read a month at a time."""
    for start, end in _months(series.first, series.last):
        values = export_hourly_values(account_id=account_id, series=series, start=start, end=end)
        progress.add(len(values))
        yield [IntervalValue(epoch, value, estimated) for epoch, value, estimated in values]


def _plain(value: Decimal) -> Decimal:
    """A decimal without trailing zeros, never in exponent notation (100, not 1E+2). A number,
    not text: the CSV writer neutralises text that starts with '-', and a credit note's
    negative quantity must stay a number that sums."""
    return Decimal(f"{value.normalize():f}")


def _iso(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


BILLS_COLUMNS = (
    "bill_number",
    "credit_note_for",
    "status",
    "period_start",
    "period_end",
    "currency",
    "issued_at",
    "due_at",
    "paid_at",
    "bill_subtotal",
    "bill_tax",
    "bill_total",
    "line",
    "line_kind",
    "service_point",
    "label",
    "band",
    "quantity",
    "unit",
    "unit_price",
    "amount",
    "estimated",
)
LEDGER_COLUMNS = ("entry", "created_at", "kind", "memo", "amount", "balance", "currency")


def _bill_rows(bill: Bill) -> list[list[object]]:
    head: list[object] = [
        bill.number or "",
        bill.credit_note_for.number if bill.credit_note_for else "",
        bill.status,
        bill.period_start.isoformat(),
        bill.period_end.isoformat(),
        bill.currency,
        _iso(bill.issued_at),
        _iso(bill.due_at),
        _iso(bill.paid_at),
        from_minor(bill.subtotal, bill.currency),
        from_minor(bill.tax, bill.currency),
        from_minor(bill.total, bill.currency),
    ]
    lines = list(bill.lines.all())
    if not lines:
        return [head + [""] * 10]
    return [
        [
            *head,
            line.position,
            line.kind,
            line.service_point.code if line.service_point else "",
            line.label,
            line.band,
            _plain(line.quantity),
            line.unit,
            _plain(line.unit_price),
            from_minor(line.amount, bill.currency),
            "yes" if line.estimated else "no",
        ]
        for line in lines
    ]


def _readme(export: DataExport, as_of: dt.datetime) -> str:
    account = export.account
    facts = {
        "number": account.number,
        "name": account.name,
        "when": _iso(as_of),
        "zone": account.time_zone,
    }
    sections = [
        _("Data export of account %(number)s (%(name)s), made %(when)s.") % facts,
        _(
            "Everything the portal holds for this account: its meter readings, its daily and "
            "hourly consumption, its bills and its wallet's ledger. Readings and consumption "
            "are only those of the periods in which this account was supplied at each service "
            "point."
        ),
        _(
            "Files are UTF-8 CSV with a header row. Times are ISO 8601 in UTC (ending in Z); "
            "days are local days of the service point (the account's time zone is %(zone)s). "
            "Energy is in watt-hours (Wh), volume in litres (L). Text cells that begin with "
            "= + - @, a tab or a carriage return start with an apostrophe, so that spreadsheets "
            "do not run them as formulas; numbers are left as they are."
        )
        % facts,
        "readings.csv\n"
        + _(
            "One row per reading: service_point, meter (serial number), register (its code), "
            "direction (import: consumption, export: generation), unit (Wh or L), "
            "interval_start and timestamp (the interval the reading covers), register_value "
            "(the meter's cumulative register, empty for interval meters), consumption (in the "
            "interval), quality (actual, pending, estimated, edited, suspect) and flags (the "
            "validation rules that fired, separated by |). Suspect readings are listed but not "
            "counted in consumption."
        ),
        "consumption_daily.csv\n"
        + _(
            "Consumption per service point, direction and local day: unit, consumption, "
            "estimated (the part of it that was estimated) and hours (hours with data; 23 or 25 "
            "on daylight-saving days)."
        ),
        "consumption.xml\n"
        + _(
            "Hourly consumption as a Green Button (NAESB ESPI) feed: one UsagePoint per "
            "service point, one MeterReading per direction, delta data per UTC hour in Wh (uom "
            "72), or in m³ with a power-of-ten multiplier of -3 (that is, litres) for volume. "
            "Hours that were partly or wholly estimated carry a ReadingQuality. It holds the "
            "same figures as the portal's charts and bills, and can be imported into other "
            "Green Button tools or back into this portal."
        ),
        "bills.csv\n"
        + _(
            "One row per bill line, with the bill's number, status, period (period_end is the "
            "first day after it), dates and totals repeated on each of its lines; amounts are "
            "in the bill's currency. A credit note names the bill it cancels in "
            "credit_note_for."
        ),
        "ledger.csv\n"
        + _(
            "Prepaid accounts: every movement of the wallet, oldest first: entry, created_at, "
            "kind (top-up, daily charge, refund, adjustment, reversal), memo, amount (positive "
            "when money came in) and balance (the balance right after it). Empty for accounts "
            "without a prepaid wallet."
        ),
    ]
    return "\n\n".join(sections) + "\n"


# --- Expiry and housekeeping -----------------------------------------------------------------


def _expire(export_ids: list[int]) -> int:
    """Mark finished exports as expired and delete their files once that is committed."""
    if not export_ids:
        return 0
    names = [
        name
        for name in DataExport.objects.filter(pk__in=export_ids).values_list("file", flat=True)
        if name
    ]
    count = DataExport.objects.filter(pk__in=export_ids).update(
        status=DataExport.Status.EXPIRED, file="", size=0
    )
    storage = export_storage()

    def delete() -> None:
        for name in names:
            storage.delete(name)

    transaction.on_commit(delete)
    return count


@transaction.atomic
def exports_sweep(*, as_of: dt.datetime) -> tuple[int, int]:
    """Delete the files of expired exports, hand stalled ones to a worker again, and remove
    what killed workers left behind; return (expired, requeued)."""
    expired = _expire(exports_expired_ids(as_of=as_of))
    stalled = exports_stalled_ids(before=as_of - STALLED_AFTER)
    for export_id in stalled:
        transaction.on_commit(_enqueue(export_id))
    directory = Path(export_storage().location)
    cutoff = time.time_ns() - int(LEFTOVER_AGE.total_seconds()) * 10**9
    if directory.is_dir():
        for leftover in directory.glob(f"{_TEMP_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                if leftover.stat().st_mtime_ns < cutoff:
                    leftover.unlink()
    return expired, len(stalled)


def _enqueue(export_id: int) -> Callable[[], object]:
    from billing.tasks.exports import export_build_task

    return lambda: export_build_task.delay(export_id=export_id)
