"""Moving readings stored one row each into the day rows of their registers (issue 14).

Readings stored before migration 0013 stay in `meters_readingside`, where every reader already
sees them through the `meters_reading` view; this moves those that belong in day rows (an
interval register's readings on its grid). Each chunk is one transaction that deletes its rows
from the side table and writes them through `meters_readings_store`, so at every moment each
reading is in exactly one place: an interrupted run loses nothing and the next one carries on
from what is left.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, transaction

from meters.ingest import sql as q
from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record

# The next side-table readings, in key order, that belong in a day row: their register's grid
# (the rule of meters_readings_store) has a slot at their time.
_PICK = """
CREATE TEMP TABLE m_move ON COMMIT DROP AS
SELECT s.register_id, s.ts
FROM meters_readingside s JOIN meters_register r ON r.id = s.register_id
WHERE (s.register_id, s.ts) > (%(reg)s, %(ts)s)
  AND r.interval_seconds BETWEEN 300 AND 3600 AND 86400 %% r.interval_seconds = 0
  AND extract(epoch FROM s.ts - ((s.ts AT TIME ZONE 'UTC')::date::timestamp
                                 AT TIME ZONE 'UTC'))::bigint %% r.interval_seconds = 0
ORDER BY s.register_id, s.ts
LIMIT %(rows)s;
"""

_MOVE = """
CREATE TEMP TABLE m_moved ON COMMIT DROP AS
WITH gone AS (
    DELETE FROM meters_readingside s USING m_move m
     WHERE s.register_id = m.register_id AND s.ts = m.ts
    RETURNING s.*
)
SELECT * FROM gone;

ALTER TABLE m_moved ADD COLUMN gone boolean NOT NULL DEFAULT false;
ANALYZE m_moved;
SELECT meters_readings_store('m_moved');
"""


@dataclass(frozen=True)
class ConvertStep:
    """Where a conversion is, after each of its transactions."""

    readings: int  # moved so far
    registers: int  # registers reached so far
    last_register: int


@dataclass
class ConvertResult:
    readings: int = 0
    registers: int = 0
    transactions: int = 0


def readings_convert(
    *,
    actor: Actor,
    chunk_rows: int = 100_000,
    max_chunks: int | None = None,
    progress: Callable[[ConvertStep], None] | None = None,
) -> ConvertResult:
    """Move every side-table reading that belongs in a day row into it, `chunk_rows` at a time.

    Safe to run while imports run (each chunk takes its registers' import locks) and to stop
    at any point; `max_chunks` stops early on purpose (tests, or a bounded maintenance window).
    """
    result = ConvertResult()
    position: tuple[int, dt.datetime] = (0, dt.datetime.min.replace(tzinfo=dt.UTC))
    seen: set[int] = set()
    while max_chunks is None or result.transactions < max_chunks:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_PICK, {"reg": position[0], "ts": position[1], "rows": chunk_rows})
            cursor.execute("SELECT register_id, ts FROM m_move ORDER BY 1 DESC, 2 DESC LIMIT 1")
            last = cursor.fetchone()
            if last is None:
                cursor.execute("DROP TABLE m_move")
                break
            position = (int(last[0]), last[1])
            cursor.execute("SELECT DISTINCT register_id FROM m_move ORDER BY register_id")
            registers = [register for (register,) in cursor.fetchall()]
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s + r) FROM unnest(%s::bigint[]) r ORDER BY r",
                [q.REGISTER_LOCK, registers],
            )
            cursor.execute(_MOVE)
            cursor.execute("SELECT count(*) FROM m_moved")
            (moved,) = cursor.fetchone() or (0,)
            cursor.execute("DROP TABLE m_move, m_moved")
        seen.update(registers)
        result.readings += int(moved)
        result.registers = len(seen)
        result.transactions += 1
        if progress is not None:
            progress(ConvertStep(result.readings, result.registers, position[0]))
    if result.readings:
        audit_record(
            actor=actor,
            event=AuditEvent.READINGS_CONVERTED,
            data={
                "readings": result.readings,
                "registers": result.registers,
                "transactions": result.transactions,
            },
        )
    return result
