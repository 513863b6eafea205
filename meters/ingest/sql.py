"""The set-wise SQL of the pipeline: resolve, validate (VEE), merge and roll up.

Each statement works on a whole staging table or a whole chunk of registers; none of them loops
over readings. The rules and their flags are defined in meters.models.Rule.

Stored readings are read through the functions of migration 0013 (meters_readings_between,
meters_reading_before and meters_reading_after), which bound the day rows they unnest, and
written only by meters_readings_store (a table of changes) and meters_readings_write (an array),
which rewrite each touched day row once per call.
"""

from __future__ import annotations

from meters.models import SUSPECT_RULES, Quality, Rule

# Advisory lock namespaces (pg_advisory_xact_lock(bigint)): one per kind of thing locked.
BATCH_LOCK = 0x6D62_0000_0000_0000
REGISTER_LOCK = 0x6D72_0000_0000_0000
SERVICE_POINT_LOCK = 0x6D73_0000_0000_0000
PARTITION_LOCK = 0x6D70_0000_0000_0001

# The partitioned tables a reading may be stored in (migration 0013).
READING_TABLES = ("public.meters_readingside", "public.meters_channelday")

# Flags that survive when an existing reading's derived values are recomputed.
KEEP_ON_RECOMPUTE = int(
    Rule.CONFLICT | Rule.EDITED | Rule.TAMPER | Rule.ESTIMATED | Rule.CLOCK_SKEW
)
SUSPECT = int(SUSPECT_RULES)

# How far before a chunk's first reading the context reaches: the stuck rule looks back this
# far at most, and gaps of up to two hours are estimated.
MAX_GAP_ESTIMATE = "2 hours"
FUTURE_TOLERANCE = "5 minutes"
SKEW_SECONDS = 900

PARAMS = {
    "q_actual": int(Quality.ACTUAL),
    "q_pending": int(Quality.PENDING),
    "q_estimated": int(Quality.ESTIMATED),
    "q_edited": int(Quality.EDITED),
    "q_suspect": int(Quality.SUSPECT),
    "r_conflict": int(Rule.CONFLICT),
    "r_gap": int(Rule.GAP),
    "r_estimated": int(Rule.ESTIMATED),
    "r_rollover": int(Rule.ROLLOVER),
    "r_reset": int(Rule.RESET),
    "r_exchange": int(Rule.METER_EXCHANGE),
    "r_negative": int(Rule.NEGATIVE),
    "r_spike": int(Rule.SPIKE),
    "r_stuck": int(Rule.STUCK),
    "r_skew": int(Rule.CLOCK_SKEW),
    "r_edited": int(Rule.EDITED),
    "keep": KEEP_ON_RECOMPUTE,
    "suspect": SUSPECT,
    "skew": SKEW_SECONDS,
}

# --- One chunk of registers -----------------------------------------------------------------
# {stage} is the batch's staging table; %(regs)s the chunk's register ids; %(batch)s the batch.

CANDIDATES = """
-- The stored readings over each register's staged span, read once.
CREATE TEMP TABLE m_old ON COMMIT DROP AS
SELECT e.*
FROM (SELECT register_id, min(ts) AS lo, max(ts) AS hi FROM {stage}
      WHERE register_id = ANY(%(regs)s) AND reject IS NULL GROUP BY register_id) b
CROSS JOIN LATERAL meters_readings_between(ARRAY[b.register_id], b.lo, b.hi) e;
ANALYZE m_old;

CREATE TEMP TABLE m_cls ON COMMIT DROP AS
WITH c AS (
    SELECT s.line, s.register_id, s.ts, s.base_value AS value, s.base_delta AS delta,
           coalesce(s.duration_s, r.interval_seconds) AS duration_s, s.src_flags, s.received_at,
           row_number() OVER w AS rn,
           first_value(s.base_value) OVER w AS first_value,
           first_value(s.base_delta) OVER w AS first_delta
    FROM {stage} s
    JOIN meters_register r ON r.id = s.register_id
    WHERE s.register_id = ANY(%(regs)s) AND s.reject IS NULL
    WINDOW w AS (PARTITION BY s.register_id, s.ts ORDER BY s.line)
), j AS (
    SELECT c.*,
           e.register_id IS NOT NULL AS existed,
           e.value AS old_value, e.delta AS old_delta, e.flags AS old_flags
    FROM c
    LEFT JOIN m_old e ON e.register_id = c.register_id AND e.ts = c.ts
)
SELECT j.*, CASE
    -- An actual reading replaces the estimate made for a gap it now fills.
    WHEN rn = 1 AND existed AND old_flags & %(r_estimated)s <> 0 THEN 'replace'
    WHEN existed AND value IS NOT DISTINCT FROM old_value
         AND (value IS NOT NULL OR delta IS NOT DISTINCT FROM old_delta) THEN 'duplicate'
    WHEN existed THEN 'conflict'
    WHEN rn > 1 AND value IS NOT DISTINCT FROM first_value
         AND (value IS NOT NULL OR delta IS NOT DISTINCT FROM first_delta) THEN 'duplicate'
    WHEN rn > 1 THEN 'conflict'
    ELSE 'new'
END AS outcome
FROM j;
"""

CONFLICTS = """
INSERT INTO meters_readingconflict (register_id, ts, value, delta, existing_value,
                                    existing_delta, batch_id, line, created_at)
SELECT register_id, ts, value, delta,
       CASE WHEN existed THEN old_value ELSE first_value END,
       CASE WHEN existed THEN old_delta ELSE first_delta END,
       %(batch)s, line, now()
FROM m_cls WHERE outcome = 'conflict'
ON CONFLICT DO NOTHING;

SELECT meters_readings_write(array_agg(ROW(
           r.register_id, r.ts, r.start_ts, r.value, r.delta,
           CASE WHEN r.quality = %(q_edited)s THEN r.quality ELSE %(q_suspect)s END,
           r.flags | %(r_conflict)s, r.batch_id, false)::meters_reading_change))
  FROM m_old r
  JOIN (SELECT DISTINCT register_id, ts FROM m_cls WHERE outcome = 'conflict' AND existed) c
    ON r.register_id = c.register_id AND r.ts = c.ts
 WHERE r.flags & %(r_conflict)s = 0;
"""

NEW_ROWS = """
CREATE TEMP TABLE m_new ON COMMIT DROP AS
SELECT n.register_id, n.ts, n.value, n.delta, n.duration_s, n.received_at, n.line,
       n.src_flags | CASE WHEN x.register_id IS NOT NULL THEN %(r_conflict)s ELSE 0 END
           AS src_flags
FROM m_cls n
LEFT JOIN (SELECT DISTINCT register_id, ts FROM m_cls
            WHERE rn > 1 AND outcome = 'conflict') x
       ON x.register_id = n.register_id AND x.ts = n.ts
WHERE n.outcome IN ('new', 'replace');

CREATE TEMP TABLE m_bounds ON COMMIT DROP AS
SELECT n.register_id, min(n.ts) AS lo, max(n.ts) AS hi,
       make_interval(hours => greatest(r.stuck_hours, 2)) AS lookback,
       make_interval(hours => coalesce(r.stuck_hours, 0)) AS stuck
FROM m_new n JOIN meters_register r ON r.id = n.register_id
GROUP BY n.register_id, r.stuck_hours;
ANALYZE m_new;
ANALYZE m_bounds;

-- Estimates near the new readings are made again from the actual readings around them, so
-- that the final state does not depend on the order the readings arrived in.
CREATE TEMP TABLE m_del ON COMMIT DROP AS
SELECT r.register_id, r.ts, r.start_ts
FROM m_bounds b
CROSS JOIN LATERAL meters_readings_between(
    ARRAY[b.register_id], b.lo - interval '{max_gap}', b.hi + interval '{max_gap}') r
-- every estimate, whatever rule it later tripped; a corrected one stays
WHERE r.flags & %(r_estimated)s <> 0 AND r.quality <> %(q_edited)s;

SELECT meters_readings_write(array_agg(
           ROW(register_id, ts, NULL, NULL, NULL, NULL, NULL, NULL, true)::meters_reading_change))
FROM m_del;

"""

CONTEXT = """
-- How far after the new readings existing ones must be looked at again:
--  * up to the last estimate deleted above (its gap is estimated again from its neighbours);
--  * through the stuck window after the first existing reading: new readings before a run of
--    unchanged values can start it earlier (or break it), which moves where it turns stuck.
CREATE TEMP TABLE m_reach ON COMMIT DROP AS
SELECT b.register_id, b.hi,
       greatest(b.hi, d.last_deleted, a.first_after + b.stuck) AS ctx_hi,
       a.first_after + b.stuck AS recheck_hi
FROM m_bounds b
LEFT JOIN (SELECT register_id, max(ts) AS last_deleted FROM m_del GROUP BY register_id) d
       ON d.register_id = b.register_id
LEFT JOIN LATERAL (
    SELECT e.ts AS first_after FROM meters_reading_after(b.register_id, b.hi) e) a ON true;

-- Each register's window is read through the storage functions, which bound the day rows
-- they unnest: as a plain join the planner would read every register's whole history.
CREATE TEMP TABLE m_ctx ON COMMIT DROP AS
SELECT y.register_id, y.ts, y.start_ts, y.value, y.delta, y.quality, y.flags, y.batch_id
FROM m_bounds b
JOIN m_reach x ON x.register_id = b.register_id
CROSS JOIN LATERAL meters_readings_between(ARRAY[b.register_id], b.lo - b.lookback, x.ctx_hi) y
UNION
SELECT y.register_id, y.ts, y.start_ts, y.value, y.delta, y.quality, y.flags, y.batch_id
FROM m_reach x CROSS JOIN LATERAL meters_reading_after(x.register_id, x.ctx_hi) y
UNION
SELECT y.register_id, y.ts, y.start_ts, y.value, y.delta, y.quality, y.flags, y.batch_id
FROM m_bounds b CROSS JOIN LATERAL meters_reading_before(b.register_id, b.lo - b.lookback) y;

CREATE TEMP TABLE m_s ON COMMIT DROP AS
SELECT register_id, ts, value, delta AS src_delta, duration_s, received_at, line, src_flags,
       true AS is_new, false AS is_est,
       NULL::integer AS old_flags, NULL::smallint AS old_quality,
       NULL::timestamptz AS old_start, NULL::bigint AS old_delta
FROM m_new
UNION ALL
SELECT register_id, ts, value, delta, NULL, NULL, NULL, 0, false, false,
       flags, quality, start_ts, delta
FROM m_ctx;

ALTER TABLE m_s ADD COLUMN recheck boolean NOT NULL DEFAULT false;
UPDATE m_s s SET recheck = true FROM m_reach x
 WHERE NOT s.is_new AND s.register_id = x.register_id AND s.ts > x.hi AND s.ts <= x.recheck_hi;
"""

# Gaps: up to two hours on a register with a known interval are filled by linear interpolation
# (of the register value, or of the interval consumption); longer ones flag the reading after.
GAPS = """
CREATE TEMP TABLE m_gap ON COMMIT DROP AS
SELECT q.register_id, q.ts, q.prev_ts, q.value, q.prev_value, q.src_delta, q.prev_delta,
       r.interval_seconds AS step,
       extract(epoch FROM q.ts - q.prev_ts)::bigint AS gap_s
FROM (
    SELECT s.*, lag(s.ts) OVER w AS prev_ts, lag(s.value) OVER w AS prev_value,
           lag(s.src_delta) OVER w AS prev_delta, lag(s.is_new) OVER w AS prev_new
    FROM m_s s WINDOW w AS (PARTITION BY s.register_id ORDER BY s.ts)
) q
JOIN meters_register r ON r.id = q.register_id
WHERE q.prev_ts IS NOT NULL
  AND (q.is_new OR q.prev_new
       -- a gap whose estimates were deleted above, to be estimated again
       OR EXISTS (SELECT 1 FROM m_del d WHERE d.register_id = q.register_id
                                         AND d.ts > q.prev_ts AND d.ts < q.ts))
  AND r.interval_seconds IS NOT NULL
  AND q.ts - q.prev_ts > make_interval(secs => r.interval_seconds);

ALTER TABLE m_gap ADD COLUMN estimable boolean;
UPDATE m_gap SET estimable =
    gap_s <= extract(epoch FROM interval '{max_gap}')
    AND gap_s %% step = 0
    AND ((value IS NOT NULL AND prev_value IS NOT NULL)
         OR (value IS NULL AND src_delta IS NOT NULL AND prev_delta IS NOT NULL));

INSERT INTO m_s (register_id, ts, value, src_delta, duration_s, received_at, line, src_flags,
                 is_new, is_est, old_flags, old_quality, old_start, old_delta)
SELECT g.register_id,
       g.prev_ts + make_interval(secs => g.step * k),
       CASE WHEN g.value IS NOT NULL
            THEN g.prev_value
                 + round((g.value - g.prev_value)::numeric * k / (g.gap_s / g.step))::bigint
       END,
       CASE WHEN g.value IS NULL
            THEN round(g.prev_delta
                       + (g.src_delta - g.prev_delta)::numeric * k / (g.gap_s / g.step))::bigint
       END,
       g.step, NULL, NULL, 0, true, true, NULL, NULL, NULL, NULL
FROM m_gap g
CROSS JOIN LATERAL generate_series(1, g.gap_s / g.step - 1) k
WHERE g.estimable;
"""

# Derived values and rules, for the new rows and for the existing rows whose predecessor or
# successor just changed (their consumption, flags or pending state depend on it).
CALCULATE = """
CREATE TEMP TABLE m_calc ON COMMIT DROP AS
WITH w1 AS (
    SELECT s.*, r.direction, r.wrap_value, r.stuck_hours, r.interval_seconds, r.meter_id,
           m.max_rate, gf.register_id IS NOT NULL AS long_gap,
           lag(s.ts) OVER w AS prev_ts, lag(s.value) OVER w AS prev_value,
           lag(s.is_new) OVER w AS prev_new,
           lead(s.ts) OVER w AS next_ts, lead(s.is_new) OVER w AS next_new,
           CASE WHEN s.value IS DISTINCT FROM lag(s.value) OVER w THEN s.ts END AS change_ts
    FROM m_s s
    JOIN meters_register r ON r.id = s.register_id
    JOIN meters_meter m ON m.id = r.meter_id
    LEFT JOIN (SELECT DISTINCT register_id, ts FROM m_gap WHERE NOT estimable) gf
           ON gf.register_id = s.register_id AND gf.ts = s.ts
    WINDOW w AS (PARTITION BY s.register_id ORDER BY s.ts)
), w2 AS (
    SELECT w1.*,
           max(change_ts) OVER (PARTITION BY register_id ORDER BY ts
                                ROWS UNBOUNDED PRECEDING) AS last_change,
           (value IS NOT NULL AND prev_value IS NOT NULL) AS reg,
           value - prev_value AS diff,
           -- Looked up only when the register went back: the rare case.
           CASE WHEN value < prev_value THEN EXISTS (
               SELECT 1 FROM meters_meterinstallation mi
                WHERE mi.meter_id = w1.meter_id
                  AND ((mi.installed_at > w1.prev_ts AND mi.installed_at <= w1.ts)
                    OR (mi.removed_at > w1.prev_ts AND mi.removed_at <= w1.ts)))
           ELSE false END AS exchanged
    FROM w1
), w3 AS (
    SELECT w2.*,
           CASE WHEN reg THEN prev_ts
                WHEN duration_s IS NOT NULL THEN ts - make_interval(secs => duration_s)
                WHEN NOT is_new THEN old_start
                -- interval consumption with no stated length: since the previous reading
                WHEN src_delta IS NOT NULL THEN prev_ts
           END AS new_start,
           (reg AND diff < 0 AND NOT exchanged AND wrap_value IS NOT NULL
            AND wrap_value - prev_value + value
                <= max_rate * extract(epoch FROM ts - prev_ts) / 3600 + 1) AS rollover
    FROM w2
    WHERE is_new
       OR (prev_new AND coalesce(old_flags, 0) & %(r_edited)s = 0)
       OR (NOT is_new AND next_new AND old_quality = %(q_pending)s)
       OR (recheck AND coalesce(old_flags, 0) & %(r_edited)s = 0)
), w4 AS (
    SELECT w3.*,
           -- Rows looked at again only for a stuck run keep everything else as it was.
           NOT (is_new OR coalesce(prev_new, false)
                OR (coalesce(next_new, false) AND old_quality = %(q_pending)s)) AS stuck_only,
           CASE WHEN NOT (is_new OR coalesce(prev_new, false)
                          OR (coalesce(next_new, false) AND old_quality = %(q_pending)s))
                THEN old_delta
                WHEN reg AND diff >= 0 THEN diff
                WHEN reg AND rollover THEN wrap_value - prev_value + value
                WHEN reg THEN NULL
                ELSE src_delta
           END AS new_delta
    FROM w3
), w5 AS (
    SELECT w4.*,
           CASE WHEN stuck_only THEN old_flags & ~%(r_stuck)s
                    | CASE WHEN reg AND diff = 0
                            AND ts - last_change >= make_interval(hours => stuck_hours)
                           THEN %(r_stuck)s ELSE 0 END
           ELSE
           (CASE WHEN is_new THEN src_flags ELSE old_flags & %(keep)s END)
           | CASE WHEN is_est THEN %(r_estimated)s ELSE 0 END
           | CASE WHEN reg AND diff < 0 AND exchanged THEN %(r_exchange)s
                  WHEN reg AND diff < 0 AND rollover THEN %(r_rollover)s
                  WHEN reg AND diff < 0 THEN %(r_reset)s
                  ELSE 0 END
           | CASE WHEN new_delta < 0 AND direction = 'import' THEN %(r_negative)s ELSE 0 END
           | CASE WHEN new_delta > 0 AND new_start IS NOT NULL
                   AND new_delta > max_rate * extract(epoch FROM ts - new_start) / 3600 + 1
                  THEN %(r_spike)s ELSE 0 END
           | CASE WHEN reg AND diff = 0
                   AND ts - last_change >= make_interval(hours => stuck_hours)
                  THEN %(r_stuck)s ELSE 0 END
           | CASE WHEN is_new AND NOT is_est AND (
                       (received_at IS NOT NULL
                        AND abs(extract(epoch FROM ts - received_at)) > %(skew)s)
                    OR (interval_seconds IS NOT NULL
                        AND extract(epoch FROM ts)::bigint %% interval_seconds <> 0))
                  THEN %(r_skew)s ELSE 0 END
           | CASE WHEN long_gap THEN %(r_gap)s ELSE 0 END
           END AS new_flags
    FROM w4
)
SELECT register_id, ts, is_new, is_est, value,
       CASE WHEN stuck_only THEN old_start ELSE new_start END AS start_ts, new_delta AS delta,
       new_flags AS flags,
       CASE WHEN old_quality = %(q_edited)s THEN %(q_edited)s
            -- made now, or an existing estimate looked at again
            WHEN is_est OR new_flags & %(r_estimated)s <> 0 THEN %(q_estimated)s
            WHEN new_flags & %(suspect)s <> 0 THEN %(q_suspect)s
            -- The context ends at the first existing reading after the new ones: an existing
            -- reading without a successor here was confirmed before unless it was pending.
            WHEN next_ts IS NULL AND (is_new OR old_quality = %(q_pending)s) THEN %(q_pending)s
            ELSE %(q_actual)s
       END::smallint AS quality
FROM w5;
"""

# The new readings (a key stored already, an edited estimate, stays as it is) and the changed
# derived values of existing ones, written in one call so each day row is rewritten once.
WRITE = """
CREATE TEMP TABLE m_w ON COMMIT DROP AS
SELECT c.register_id, c.ts, c.start_ts, c.value, c.delta, c.quality, c.flags,
       %(batch)s::bigint AS batch_id, false AS gone, true AS is_new
FROM m_calc c
WHERE c.is_new
  AND NOT EXISTS (SELECT 1 FROM m_ctx x WHERE x.register_id = c.register_id AND x.ts = c.ts)
UNION ALL
SELECT c.register_id, c.ts, c.start_ts, x.value, c.delta, c.quality, c.flags, x.batch_id,
       false, false
FROM m_calc c
JOIN m_ctx x ON x.register_id = c.register_id AND x.ts = c.ts
WHERE NOT c.is_new
  AND (x.start_ts, x.delta, x.flags, x.quality)
      IS DISTINCT FROM (c.start_ts, c.delta, c.flags, c.quality);

ANALYZE m_w;
SELECT meters_readings_store('m_w');
"""

WRITTEN = """
SELECT count(*) FILTER (WHERE is_new),
       count(*) FILTER (WHERE is_new AND flags & %(r_estimated)s <> 0)
FROM m_w;
"""

COUNTS = """
SELECT count(*) FILTER (WHERE outcome = 'duplicate'),
       count(*) FILTER (WHERE outcome = 'conflict')
FROM m_cls;
"""

AFFECTED = """
CREATE TEMP TABLE m_aff ON COMMIT DROP AS
SELECT register_id, min(coalesce(start_ts, ts)) AS lo, max(ts) AS hi
FROM m_calc GROUP BY register_id
UNION ALL
SELECT register_id, min(coalesce(start_ts, ts)), max(ts) FROM m_del GROUP BY register_id
UNION ALL
SELECT register_id, min(ts), max(ts) FROM m_cls WHERE outcome = 'conflict' GROUP BY register_id;
ANALYZE m_aff;
"""

# --- Rollups --------------------------------------------------------------------------------
# Affected (service point, direction, hour range) from m_aff, recomputed from the readings.
# A reading's consumption is spread over the hours its interval covers, in proportion to the
# seconds in each. Each hour gets the difference of the floored cumulative shares at its two
# ends, so the pieces sum exactly to the reading's delta without a window over the pieces
# (a sort of every piece, the slowest part of the refresh before); each piece belongs to the
# account whose supply covers the piece's start.

ROLLUP_RANGES = """
CREATE TEMP TABLE m_sp ON COMMIT DROP AS
SELECT mi.service_point_id AS sp, r.direction,
       date_trunc('hour', min(greatest(a.lo, mi.installed_at))) AS h_lo,
       date_trunc('hour',
                  max(least(a.hi, coalesce(mi.removed_at, a.hi))) - interval '1 microsecond')
           + interval '1 hour' AS h_hi
FROM (SELECT register_id, min(lo) AS lo, max(hi) AS hi FROM m_aff GROUP BY register_id) a
JOIN meters_register r ON r.id = a.register_id
JOIN meters_meterinstallation mi
  ON mi.meter_id = r.meter_id AND mi.installed_at < a.hi
 AND (mi.removed_at IS NULL OR mi.removed_at > a.lo)
-- Only active energy and volume are rolled up (meters.models.ROLLUP_DIRECTIONS): reactive
-- registers and totals beside tariff registers are stored, never summed, charted or billed.
WHERE r.direction IN ('import', 'export')
GROUP BY mi.service_point_id, r.direction;
ANALYZE m_sp;

SELECT pg_advisory_xact_lock({sp_lock} + sp) FROM (SELECT DISTINCT sp FROM m_sp ORDER BY sp) s;
"""

# The hours of m_sp's ranges are computed into m_hours, then each UTC day row they touch is
# rebuilt once from its old arrays (hours outside the range) and m_hours (hours inside it).
ROLLUP_HOURLY = """
CREATE TEMP TABLE m_hours ON COMMIT DROP AS
SELECT p.sp, p.direction, p.hour, sup.account_id,
       coalesce(sum(p.share) FILTER (WHERE p.quality <> %(q_suspect)s), 0)::bigint
           AS consumption,
       coalesce(sum(p.share) FILTER (WHERE p.quality = %(q_estimated)s), 0)::bigint
           AS estimated,
       (count(*) FILTER (WHERE p.quality = %(q_suspect)s))::integer AS suspect_count,
       count(*)::integer AS reading_count
FROM (
    SELECT x.sp, x.direction, x.h_lo, x.h_hi, e.quality, piece.hour, piece.piece_start,
           piece.share
    FROM m_sp x
    JOIN meters_meterinstallation mi
      ON mi.service_point_id = x.sp AND mi.installed_at < x.h_hi
     AND (mi.removed_at IS NULL OR mi.removed_at > x.h_lo)
    JOIN meters_register r ON r.meter_id = mi.meter_id AND r.direction = x.direction
    -- LATERAL with OFFSET 0: an index range scan from the range's start for each register,
    -- pruning older partitions at run time. As a join the planner kept only register_id as
    -- the index condition and read each register's whole history (65 s a chunk with a year).
    -- A reading after the range can still start inside it: a day past its end, and the first
    -- reading after that (a long gap's), are read too.
    CROSS JOIN LATERAL (
        SELECT e.register_id, e.ts, e.start_ts, e.delta, e.quality
        FROM (SELECT * FROM meters_readings_between(ARRAY[r.id],
                                                    greatest(x.h_lo, mi.installed_at),
                                                    x.h_hi + interval '1 day')
              UNION ALL
              SELECT * FROM meters_reading_after(r.id, x.h_hi + interval '1 day')) e
        WHERE e.ts > greatest(x.h_lo, mi.installed_at)
          AND e.start_ts < x.h_hi AND e.delta IS NOT NULL AND e.start_ts IS NOT NULL
          AND (mi.removed_at IS NULL OR e.ts <= mi.removed_at)) e
    CROSS JOIN LATERAL (
        SELECT h AS hour,
               greatest(e.start_ts, h) AS piece_start,
               CASE WHEN e.start_ts >= h AND e.ts <= h + interval '1 hour' THEN e.delta
                    ELSE floor(e.delta::numeric
                               * extract(epoch FROM least(e.ts, h + interval '1 hour')
                                                    - e.start_ts)
                               / extract(epoch FROM e.ts - e.start_ts))::bigint
                         - floor(e.delta::numeric
                                 * extract(epoch FROM greatest(e.start_ts, h) - e.start_ts)
                                 / extract(epoch FROM e.ts - e.start_ts))::bigint
               END AS share
        FROM generate_series(date_trunc('hour', e.start_ts),
                             e.ts - interval '1 microsecond', interval '1 hour') h
    ) piece
) p
LEFT JOIN meters_supply sup
  ON sup.service_point_id = p.sp AND sup.start <= p.piece_start
 AND (sup."end" IS NULL OR sup."end" > p.piece_start)
WHERE p.hour >= p.h_lo AND p.hour < p.h_hi
GROUP BY p.sp, p.direction, p.hour, sup.account_id;
ANALYZE m_hours;

CREATE TEMP TABLE m_hday ON COMMIT DROP AS
SELECT x.sp, x.direction, x.h_lo, x.h_hi, d::date AS day
FROM m_sp x
CROSS JOIN LATERAL generate_series((x.h_lo AT TIME ZONE 'UTC')::date,
                                   ((x.h_hi - interval '1 microsecond') AT TIME ZONE 'UTC')::date,
                                   interval '1 day') d;
ANALYZE m_hday;

-- The day rows to rebuild: those stored for the days, and those the new hours need (plain
-- joins, so that both sides are hashed once rather than m_hours scanned per day).
WITH keys AS (
    SELECT k.sp, k.direction, k.day, k.h_lo, k.h_hi, h.account_id
    FROM m_hday k
    JOIN meters_hourlyday h
      ON h.service_point_id = k.sp AND h.direction = k.direction AND h.day = k.day
    UNION
    SELECT k.sp, k.direction, k.day, k.h_lo, k.h_hi, n.account_id
    FROM (SELECT DISTINCT sp, direction, (hour AT TIME ZONE 'UTC')::date AS day, account_id
          FROM m_hours) n
    JOIN m_hday k ON k.sp = n.sp AND k.direction = n.direction AND k.day = n.day
), rebuilt AS (
    SELECT k.sp, k.direction, k.day, k.account_id,
           array_agg(CASE WHEN t.inside THEN n.consumption ELSE e.c END ORDER BY e.i)
               AS consumption,
           array_agg(CASE WHEN t.inside THEN n.estimated ELSE e.es END ORDER BY e.i)
               AS estimated,
           array_agg(CASE WHEN t.inside THEN n.suspect_count ELSE e.s END ORDER BY e.i)
               AS suspect_count,
           array_agg(CASE WHEN t.inside THEN n.reading_count ELSE e.n END ORDER BY e.i)
               AS reading_count
    FROM keys k
    LEFT JOIN meters_hourlyday h
           ON h.service_point_id = k.sp AND h.direction = k.direction AND h.day = k.day
          AND h.account_id IS NOT DISTINCT FROM k.account_id
    CROSS JOIN LATERAL ROWS FROM (generate_series(1, 24), unnest(h.consumption),
                                  unnest(h.estimated), unnest(h.suspect_count),
                                  unnest(h.reading_count)) AS e(i, c, es, s, n)
    CROSS JOIN LATERAL (
        SELECT k.day::timestamp AT TIME ZONE 'UTC' + (e.i - 1) * interval '1 hour' AS hr) hr
    CROSS JOIN LATERAL (SELECT hr.hr >= k.h_lo AND hr.hr < k.h_hi AS inside) t
    LEFT JOIN m_hours n
           ON n.sp = k.sp AND n.direction = k.direction AND n.hour = hr.hr
          AND coalesce(n.account_id, 0) = coalesce(k.account_id, 0)
    GROUP BY k.sp, k.direction, k.day, k.account_id
), stored AS (
    INSERT INTO meters_hourlyday AS d (service_point_id, direction, day, account_id,
                                       consumption, estimated, suspect_count, reading_count)
    SELECT sp, direction, day, account_id, consumption, estimated, suspect_count,
           reading_count
    FROM rebuilt WHERE array_remove(reading_count, NULL) <> '{}'
    ON CONFLICT ON CONSTRAINT meters_hourlyday_key DO UPDATE
       SET consumption = excluded.consumption, estimated = excluded.estimated,
           suspect_count = excluded.suspect_count, reading_count = excluded.reading_count
)
DELETE FROM meters_hourlyday d USING rebuilt b
 WHERE d.service_point_id = b.sp AND d.direction = b.direction AND d.day = b.day
   AND d.account_id IS NOT DISTINCT FROM b.account_id
   AND array_remove(b.reading_count, NULL) = '{}';
"""

ROLLUP_DAILY = """
CREATE TEMP TABLE m_days ON COMMIT DROP AS
SELECT DISTINCT x.sp, x.direction, s.time_zone AS tz, d::date AS day
FROM m_sp x
JOIN meters_servicepoint s ON s.id = x.sp
CROSS JOIN LATERAL generate_series(
    (x.h_lo AT TIME ZONE s.time_zone)::date,
    ((x.h_hi - interval '1 microsecond') AT TIME ZONE s.time_zone)::date,
    interval '1 day') d;
ANALYZE m_days;

SET LOCAL enable_hashjoin = off;
SET LOCAL enable_mergejoin = off;
DELETE FROM meters_rollupdaily dd USING m_days d
 WHERE dd.service_point_id = d.sp AND dd.direction = d.direction AND dd.day = d.day;
SET LOCAL enable_hashjoin = on;
SET LOCAL enable_mergejoin = on;

INSERT INTO meters_rollupdaily (service_point_id, direction, day, account_id, consumption,
                                estimated, suspect_count, reading_count, hours)
SELECT d.sp, d.direction, d.day, h.account_id, sum(h.consumption), sum(h.estimated),
       sum(h.suspect_count), sum(h.reading_count), count(DISTINCT h.hour)
FROM m_days d
CROSS JOIN LATERAL (
    SELECT * FROM meters_hourly(d.day::timestamp AT TIME ZONE d.tz,
                                (d.day + 1)::timestamp AT TIME ZONE d.tz) h
    WHERE h.service_point_id = d.sp AND h.direction = d.direction) h
GROUP BY d.sp, d.direction, d.day, h.account_id;
"""

# A chunk's temp tables, dropped before the next chunk (ON COMMIT DROP covers the normal path).
TEMP_TABLES = (
    "m_cand",
    "m_old",
    "m_cls",
    "m_new",
    "m_bounds",
    "m_del",
    "m_reach",
    "m_ctx",
    "m_s",
    "m_gap",
    "m_calc",
    "m_w",
    "m_aff",
    "m_sp",
    "m_hours",
    "m_hday",
    "m_days",
)
