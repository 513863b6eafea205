"""Many accounts at once: the organisation pages' set-based fragments and subtree totals."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection

from meters.models import (
    Direction,
)
from portal.lib.periods import add_months

# --- Many accounts at once (organisation pages) -------------------------------------------
#
# Set-based fragments over a relation `scope(account_id, today)` that the caller defines in a
# WITH clause: the accounts to read, each with its local date. The organisation accounts table
# joins them into one statement, so that sorting and filtering by these values happen in SQL
# over a whole subtree, whatever its size. Each returns (sql, params); parameter names carry the
# fragment's prefix so that the caller can merge them.


def month_consumption_cte() -> tuple[str, dict[str, Any]]:
    """Rows (account_id, kind, direction, consumption): each account's energy or volume this
    month per utility kind and direction (imported, or exported to the grid: apart, never
    netted), its local first of the month to its local today, from the daily rollups (the
    same sums as month_comparison's this_month)."""
    sql = """
        SELECT d.account_id, sp.kind, d.direction, sum(d.consumption)::bigint AS consumption
        FROM scope s
        JOIN meters_rollupdaily d ON d.account_id = s.account_id
             AND d.direction = ANY(%(mc_directions)s)
             AND d.day >= date_trunc('month', s.today)::date AND d.day <= s.today
        JOIN meters_servicepoint sp ON sp.id = d.service_point_id
        GROUP BY d.account_id, sp.kind, d.direction
    """
    return sql, {"mc_directions": list(Direction.values)}


def last_contact_cte(*, as_of: dt.datetime) -> tuple[str, dict[str, Any]]:
    """Rows (account_id, last_contact): the latest contact of the meters installed now where
    the account is supplied now (the meters meters_of_account lists)."""
    sql = """
        SELECT sup.account_id, max(m.last_contact_at) AS last_contact
        FROM scope s
        JOIN meters_supply sup ON sup.account_id = s.account_id AND sup.start <= %(lc_now)s
             AND (sup."end" IS NULL OR sup."end" > %(lc_now)s)
        JOIN meters_meterinstallation mi ON mi.service_point_id = sup.service_point_id
             AND mi.installed_at <= %(lc_now)s
             AND (mi.removed_at IS NULL OR mi.removed_at > %(lc_now)s)
        JOIN meters_meter m ON m.id = mi.meter_id
        GROUP BY sup.account_id
    """
    return sql, {"lc_now": as_of}


@dataclass(frozen=True)
class KindTotal:
    """Energy or volume (base units) of one utility kind in one direction (imported, or
    exported to the grid) over one day or month."""

    period: dt.date
    kind: str
    direction: str
    consumption: int


def subtree_consumption_by_kind(
    *,
    organisation_path: str,
    as_of: dt.datetime,
    bucket: str,
    periods: int,
    withheld: Sequence[str] = (),
) -> list[KindTotal]:
    """Energy or volume of every account beneath an organisation (by materialised path) per
    utility kind, direction and day or month, from the daily rollups in one grouped query.
    Imports and exports are summed apart: an exporting household never lowers the figure.

    `bucket` is "day" or "month"; the last `periods` of them up to each account's local today
    (the current month counts as one). Days are the rollups' local days.
    """
    if bucket not in ("day", "month") or periods < 1:
        raise ValueError(f"bucket is day or month and periods positive, not {bucket!r}/{periods}")
    if bucket == "day":
        first = "today - (%(periods)s - 1)"
        bound = as_of.date() - dt.timedelta(days=periods + 1)
    else:
        first = "(date_trunc('month', today) - make_interval(months => %(periods)s - 1))::date"
        bound = add_months(as_of.date(), -(periods + 1))
    with connection.cursor() as cursor:
        # Each account's local today is worked out once, not once per rollup row; days are
        # summed first and only their few hundred totals are put into months.
        cursor.execute(
            f"""
            WITH accounts AS MATERIALIZED (
                SELECT id, today, {first} AS first
                FROM (
                    SELECT a.id, (%(now)s::timestamptz AT TIME ZONE a.time_zone)::date AS today
                    FROM tenancy_account a
                    JOIN tenancy_organisation o ON o.id = a.organisation_id
                    WHERE o.path LIKE %(path)s AND NOT o.path LIKE ANY(%(withheld)s)
                ) local
            ), days AS (
                SELECT d.day, sp.kind, d.direction, sum(d.consumption) AS consumption
                FROM accounts a
                JOIN meters_rollupdaily d ON d.account_id = a.id
                     AND d.direction = ANY(%(directions)s)
                     AND d.day >= a.first AND d.day <= a.today
                JOIN meters_servicepoint sp ON sp.id = d.service_point_id
                -- Local dates are within a day of UTC's: a constant range the index can use.
                WHERE d.day >= %(bound)s AND d.day <= %(today)s::date + 1
                GROUP BY d.day, sp.kind, d.direction
            )
            SELECT date_trunc(%(bucket)s, day::timestamp)::date AS period, kind, direction,
                   sum(consumption)::bigint
            FROM days
            GROUP BY 1, 2, 3
            ORDER BY 1, 2, 3
            """,  # noqa: S608 - only fixed fragments are formatted in
            {
                "bucket": bucket,
                "directions": list(Direction.values),
                "path": organisation_path + "%",
                "withheld": [path + "%" for path in withheld],
                "now": as_of,
                "periods": periods,
                "bound": bound,
                "today": as_of.date(),
            },
        )
        return [
            KindTotal(period, kind, direction, int(total))
            for period, kind, direction, total in cursor.fetchall()
        ]


def subtree_exporting_kinds(*, organisation_path: str, withheld: Sequence[str] = ()) -> list[str]:
    """The utility kinds of which meters beneath an organisation (by materialised path) have an
    export register, at service points supplied to its accounts now or before: the kinds a
    table of them shows exported energy for."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT sp.kind
            FROM tenancy_organisation o
            JOIN tenancy_account a ON a.organisation_id = o.id
            JOIN meters_supply sup ON sup.account_id = a.id
            JOIN meters_servicepoint sp ON sp.id = sup.service_point_id
            JOIN meters_meterinstallation mi ON mi.service_point_id = sp.id
            JOIN meters_register r ON r.meter_id = mi.meter_id AND r.direction = %s
            WHERE o.path LIKE %s AND NOT o.path LIKE ANY(%s)
            """,
            [str(Direction.EXPORT), organisation_path + "%", [p + "%" for p in withheld]],
        )
        return sorted(kind for (kind,) in cursor.fetchall())


def subtree_utility_kinds(*, organisation_path: str, withheld: Sequence[str] = ()) -> list[str]:
    """The utility kinds of the service points supplied, now or before, to accounts beneath an
    organisation (by materialised path), for the columns a table of them needs."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT sp.kind
            FROM tenancy_organisation o
            JOIN tenancy_account a ON a.organisation_id = o.id
            JOIN meters_supply sup ON sup.account_id = a.id
            JOIN meters_servicepoint sp ON sp.id = sup.service_point_id
            WHERE o.path LIKE %s AND NOT o.path LIKE ANY(%s)
            """,
            [organisation_path + "%", [p + "%" for p in withheld]],
        )
        return sorted(kind for (kind,) in cursor.fetchall())
