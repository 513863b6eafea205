"""Any delivery of the same readings ends in the state of one clean import (issue 14).

Hypothesis draws how a day and a half of quarter-hour readings (two UTC day rows) arrives:
cut into parts, the parts shuffled, some sent twice, and single readings held back and sent
late, after their neighbours. The readings (values, consumption, quality, flags) and the
hourly rollups must end as one clean import of the whole file leaves them, with the gaps
estimated on the way and their estimates replaced. Real PostgreSQL and the real pipeline;
PORTAL_HYPOTHESIS_EXAMPLES sets how many deliveries are tried (8 in `make test`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os

from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meters.models import RollupHourly
from tests.meters.helpers import csv_rows, quarter_hours, readings_checksum, run_import

T0 = dt.datetime(2026, 4, 6, 12, 0, tzinfo=dt.UTC)
COUNT = 4 * 36
EXAMPLES = int(os.environ.get("PORTAL_HYPOTHESIS_EXAMPLES", "8"))


def _rows() -> list[tuple[str, float]]:
    value = 5_000.0
    rows = []
    for i, ts in enumerate(quarter_hours(T0, COUNT)):
        value += 0.05 + (i % 7) * 0.01
        rows.append((ts.isoformat(), round(value, 3)))
    return rows


ROWS = _rows()


def _state() -> tuple[str, list[tuple[object, ...]]]:
    rollups: list[tuple[object, ...]] = list(
        RollupHourly.objects.order_by("hour").values_list(
            "hour", "consumption", "estimated", "suspect_count", "reading_count"
        )
    )
    return readings_checksum(), rollups


def _forget_readings() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE meters_readingside, meters_channelday")
    RollupHourly.objects.all().delete()


@st.composite
def deliveries(draw: st.DrawFn) -> list[list[tuple[str, float]]]:
    """The files, in the order they arrive."""
    late = sorted(draw(st.sets(st.integers(1, COUNT - 2), max_size=4)))
    kept = [row for i, row in enumerate(ROWS) if i not in late]
    cuts = sorted(draw(st.sets(st.integers(1, len(kept) - 1), max_size=10)))
    bounds = [0, *cuts, len(kept)]
    parts = [kept[a:b] for a, b in itertools.pairwise(bounds)]
    files = draw(st.permutations(parts))
    again = draw(st.lists(st.sampled_from(parts), max_size=3))
    files = [*files, *again]
    return [*files, *([ROWS[i]] for i in late)]


def test_any_delivery_ends_in_the_state_of_one_clean_import(transactional_db: None) -> None:
    # Real commits (tests/conftest.py's transactional_db): one transaction around every example
    # would hold the locks of every temp table the imports made (out of shared memory after a
    # few dozen examples).
    run_import(csv_rows("HY1", ROWS))
    clean = _state()
    assert clean[1], "the clean import rolled nothing up"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(deliveries())
    def arrive(files: list[list[tuple[str, float]]]) -> None:
        _forget_readings()
        for rows in files:
            # reprocess: a file sent again is merged again (its rows are duplicates), and an
            # earlier example's identical file is not skipped as already imported.
            run_import(csv_rows("HY1", rows), register_meters=False, reprocess=True)
        assert _state() == clean

    arrive()
