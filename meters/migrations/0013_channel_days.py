"""Interval readings as one row per register and UTC day (issue 14).

`meters_channelday` holds a register's readings of one UTC day as arrays positioned by
interval: slot i (1-based) is the reading at midnight UTC + (i - 1) × interval_s. A NULL in
`quality` marks a slot with no reading. Every UTC day has 86,400 s, so DST never changes a row's
length. Registers read every 5 to 60 minutes on that grid go there; everything else (daily and
monthly reads, manual reads, off-grid timestamps, and any reading stored before this layout
until `convert_readings` moves it) stays one row per reading in `meters_readingside`, which is
the old `meters_reading` table renamed.

`meters_reading` becomes a view of both, so every reader sees one set of readings whatever the
layout. Writes go through `meters_readings_write()`, which rewrites each touched day row once;
the view's INSTEAD OF triggers call it too, for the rare single-row write. Only `meters` knows
this (tests/meters/test_storage.py checks that nothing outside it names these tables), and
`manage.py convert_readings` (meters/services/storage.py) moves older readings into day rows.
"""

import django.contrib.postgres.fields
import django.db.models.deletion
from django.db import migrations, models

FORWARD = r"""
-- The old table becomes the side table (its partitions and partman's configuration follow).
ALTER TABLE meters_reading RENAME TO meters_readingside;
DO $$
DECLARE child record;
BEGIN
    FOR child IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = 'meters_readingside'::regclass LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', child.relname,
                       replace(child.relname, 'meters_reading_', 'meters_readingside_'));
    END LOOP;
END $$;
ALTER TABLE IF EXISTS partman.template_public_meters_reading
    RENAME TO template_public_meters_readingside;
UPDATE partman.part_config
   SET parent_table = 'public.meters_readingside',
       template_table = replace(template_table, 'meters_reading', 'meters_readingside')
 WHERE parent_table = 'public.meters_reading';

CREATE TABLE meters_channelday (
    register_id bigint NOT NULL,
    day date NOT NULL,
    -- Where the register was installed at the day's first reading: kept beside the register
    -- so the table can later be distributed by register and joined locally by service point.
    service_point_id bigint,
    interval_s integer NOT NULL,
    vals bigint[] NOT NULL,
    deltas bigint[] NOT NULL,
    quality smallint[] NOT NULL,
    flags integer[] NOT NULL,
    -- ts - start_ts in seconds (NULL: no start known)
    spans integer[] NOT NULL,
    -- The batch that last wrote the row.
    batch_id bigint,
    PRIMARY KEY (register_id, day),
    CONSTRAINT meters_channelday_grid CHECK (
        interval_s BETWEEN 300 AND 3600 AND 86400 % interval_s = 0),
    CONSTRAINT meters_channelday_lengths CHECK (
        cardinality(vals) = 86400 / interval_s AND cardinality(deltas) = 86400 / interval_s
        AND cardinality(quality) = 86400 / interval_s AND cardinality(flags) = 86400 / interval_s
        AND cardinality(spans) = 86400 / interval_s)
) PARTITION BY RANGE (day);

SELECT partman.create_parent(
    p_parent_table => 'public.meters_channelday',
    p_control => 'day',
    p_type => 'native',
    p_interval => 'monthly',
    p_premake => 3,
    p_start_partition => to_char(date_trunc('month', now()) - interval '1 month',
                                 'YYYY-MM-DD HH24:MI:SS')
);
UPDATE partman.part_config
   SET infinite_time_partitions = true, retention = NULL
 WHERE parent_table = 'public.meters_channelday';

-- Compress every array inside the row, not only the largest until the row fits in 2 kB:
-- quality, flags and spans are nearly constant and shrink to a few dozen bytes each
-- (measured: 17.4 bytes a reading with the defaults, 6.7 with these). Storage MAIN keeps them
-- in the row, so a day is read with its row and no TOAST lookup. Fill factor 90 leaves room
-- for a late reading's rewrite of its day row on the same page (a HOT update). partman copies
-- the template's options to each new partition; the existing ones are set here.
ALTER TABLE meters_channelday
    ALTER vals SET STORAGE MAIN, ALTER deltas SET STORAGE MAIN,
    ALTER quality SET STORAGE MAIN, ALTER flags SET STORAGE MAIN, ALTER spans SET STORAGE MAIN;
ALTER TABLE partman.template_public_meters_channelday
    SET (toast_tuple_target = 128, fillfactor = 90);
DO $$
DECLARE child record;
BEGIN
    FOR child IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = 'meters_channelday'::regclass LOOP
        EXECUTE format('ALTER TABLE %I SET (toast_tuple_target = 128, fillfactor = 90)',
                       child.relname);
    END LOOP;
END $$;

CREATE TYPE meters_reading_change AS (
    register_id bigint, ts timestamptz, start_ts timestamptz, value bigint, delta bigint,
    quality smallint, flags integer, batch_id bigint, gone boolean
);

-- The readings of one day row: slot i is at midnight UTC + (i - 1) x interval_s, and its
-- interval started spans[i] seconds earlier. The one place where readers turn slots into
-- times; inlined by the planner wherever it is called.
CREATE FUNCTION meters_day_readings(d meters_channelday)
RETURNS TABLE (register_id bigint, ts timestamptz, start_ts timestamptz, value bigint,
               delta bigint, quality smallint, flags integer, batch_id bigint, slot bigint)
LANGUAGE sql IMMUTABLE AS $f$
SELECT d.register_id,
       d.day::timestamp AT TIME ZONE 'UTC' + (u.i - 1) * d.interval_s * interval '1 second',
       d.day::timestamp AT TIME ZONE 'UTC'
           + ((u.i - 1) * d.interval_s - u.sp) * interval '1 second',
       u.v, u.dl, u.q, u.f, d.batch_id, u.i
FROM unnest(d.vals, d.deltas, d.quality, d.flags, d.spans) WITH ORDINALITY u(v, dl, q, f, sp, i)
WHERE u.q IS NOT NULL
$f$;

-- Every reading, one row each, whatever the layout.
CREATE VIEW meters_reading AS
SELECT r.register_id, r.ts, r.start_ts, r.value, r.delta, r.quality, r.flags, r.batch_id
FROM meters_channelday d CROSS JOIN LATERAL meters_day_readings(d) r
UNION ALL
SELECT register_id, ts, start_ts, value, delta, quality, flags, batch_id
FROM meters_readingside;

-- The readings of some registers from p_lo to p_hi, both included. Inlined by the planner,
-- so the day bounds prune partitions and use the primary key.
CREATE FUNCTION meters_readings_between(p_regs bigint[], p_lo timestamptz, p_hi timestamptz)
RETURNS SETOF meters_reading LANGUAGE sql STABLE AS $f$
SELECT r.register_id, r.ts, r.start_ts, r.value, r.delta, r.quality, r.flags, r.batch_id
FROM meters_channelday d CROSS JOIN LATERAL meters_day_readings(d) r
WHERE d.register_id = ANY(p_regs)
  AND d.day >= (p_lo AT TIME ZONE 'UTC')::date AND d.day <= (p_hi AT TIME ZONE 'UTC')::date
  AND r.ts >= p_lo AND r.ts <= p_hi
UNION ALL
SELECT register_id, ts, start_ts, value, delta, quality, flags, batch_id
FROM meters_readingside
WHERE register_id = ANY(p_regs) AND ts >= p_lo AND ts <= p_hi
$f$;

-- The last reading of a register before p_ts (not before p_lo), and the first after p_ts (not
-- after p_hi); with p_usable, only readings with a register value that are not suspect (4).
-- The day rows are read newest (oldest) first and unnested one at a time, so the search stops
-- at the first day that has one.
CREATE FUNCTION meters_reading_before(p_reg bigint, p_ts timestamptz,
                                      p_lo timestamptz DEFAULT '-infinity',
                                      p_usable boolean DEFAULT false)
RETURNS SETOF meters_reading LANGUAGE sql STABLE AS $f$
SELECT * FROM (
    (SELECT r.register_id, r.ts, r.start_ts, r.value, r.delta, r.quality, r.flags, r.batch_id
     FROM meters_channelday d CROSS JOIN LATERAL meters_day_readings(d) r
     WHERE d.register_id = p_reg AND d.day <= (p_ts AT TIME ZONE 'UTC')::date
       AND d.day >= (p_lo AT TIME ZONE 'UTC')::date AND r.ts < p_ts AND r.ts >= p_lo
       AND (NOT p_usable OR (r.value IS NOT NULL AND r.quality <> 4))
     ORDER BY d.day DESC, r.slot DESC LIMIT 1)
    UNION ALL
    (SELECT register_id, ts, start_ts, value, delta, quality, flags, batch_id
     FROM meters_readingside WHERE register_id = p_reg AND ts < p_ts AND ts >= p_lo
       AND (NOT p_usable OR (value IS NOT NULL AND quality <> 4))
     ORDER BY ts DESC LIMIT 1)
) x ORDER BY ts DESC LIMIT 1
$f$;

CREATE FUNCTION meters_reading_after(p_reg bigint, p_ts timestamptz,
                                     p_hi timestamptz DEFAULT 'infinity',
                                     p_usable boolean DEFAULT false)
RETURNS SETOF meters_reading LANGUAGE sql STABLE AS $f$
SELECT * FROM (
    (SELECT r.register_id, r.ts, r.start_ts, r.value, r.delta, r.quality, r.flags, r.batch_id
     FROM meters_channelday d CROSS JOIN LATERAL meters_day_readings(d) r
     WHERE d.register_id = p_reg AND d.day >= (p_ts AT TIME ZONE 'UTC')::date
       AND d.day <= (p_hi AT TIME ZONE 'UTC')::date AND r.ts > p_ts AND r.ts <= p_hi
       AND (NOT p_usable OR (r.value IS NOT NULL AND r.quality <> 4))
     ORDER BY d.day, r.slot LIMIT 1)
    UNION ALL
    (SELECT register_id, ts, start_ts, value, delta, quality, flags, batch_id
     FROM meters_readingside WHERE register_id = p_reg AND ts > p_ts AND ts <= p_hi
       AND (NOT p_usable OR (value IS NOT NULL AND quality <> 4))
     ORDER BY ts LIMIT 1)
) x ORDER BY ts LIMIT 1
$f$;

-- A register's latest p_n readings: p_n day rows hold at least p_n readings.
CREATE FUNCTION meters_readings_latest(p_reg bigint, p_n integer)
RETURNS SETOF meters_reading LANGUAGE sql STABLE AS $f$
SELECT * FROM (
    SELECT r.register_id, r.ts, r.start_ts, r.value, r.delta, r.quality, r.flags, r.batch_id
    FROM (SELECT * FROM meters_channelday WHERE register_id = p_reg
          ORDER BY day DESC LIMIT p_n) d
    CROSS JOIN LATERAL meters_day_readings(d::meters_channelday) r
    UNION ALL
    (SELECT register_id, ts, start_ts, value, delta, quality, flags, batch_id
     FROM meters_readingside WHERE register_id = p_reg ORDER BY ts DESC LIMIT p_n)
) x ORDER BY ts DESC LIMIT p_n
$f$;

-- Apply a set of reading changes, one per key (gone = delete), from a table (a temp table the
-- caller has ANALYZEd: the plan depends on how many there are). A key already in the side
-- table changes there; any other goes to its day row when the register's grid (the row's own,
-- once the row exists) has a slot at its time, else to the side table. Each touched day row is
-- rebuilt once, from its old arrays and the changes.
CREATE FUNCTION meters_readings_store(p_source regclass) RETURNS void LANGUAGE plpgsql
SET jit = off AS $f$
DECLARE
    merge_joins text := current_setting('enable_mergejoin');
BEGIN
    -- Where each change goes, ANALYZEd so that the statements below are planned for it.
    DROP TABLE IF EXISTS pg_temp.meters_store_k;
    EXECUTE format($q$
        CREATE TEMP TABLE meters_store_k ON COMMIT DROP AS
        WITH c AS (
            SELECT x.register_id, x.ts, x.start_ts, x.value, x.delta, x.quality, x.flags, x.batch_id,
                   x.gone, (x.ts AT TIME ZONE 'UTC')::date AS day
            FROM %s x
        ), spans AS (
            SELECT register_id, min(ts) AS lo, max(ts) AS hi FROM c GROUP BY register_id
        ), sided AS (
            -- Registers with side-table readings in the changes' span: only their keys are looked up
            -- there one by one (an import of interval data has none).
            SELECT b.register_id FROM spans b
            WHERE EXISTS (SELECT 1 FROM meters_readingside s
                          WHERE s.register_id = b.register_id AND s.ts >= b.lo AND s.ts <= b.hi)
        ), day_rows AS (
            SELECT y.register_id, y.day, d.interval_s
            FROM (SELECT DISTINCT register_id, day FROM c) y
            LEFT JOIN meters_channelday d ON d.register_id = y.register_id AND d.day = y.day
        ), t AS (
            SELECT c.*,
                   extract(epoch FROM c.ts - (c.day::timestamp AT TIME ZONE 'UTC'))::numeric AS sec,
                   coalesce(w.interval_s, r.interval_seconds) AS iv,
                   sd.register_id IS NOT NULL
                   AND EXISTS (SELECT 1 FROM meters_readingside s
                               WHERE s.register_id = c.register_id AND s.ts = c.ts) AS in_side
            FROM c
            JOIN meters_register r ON r.id = c.register_id
            JOIN day_rows w ON w.register_id = c.register_id AND w.day = c.day
            LEFT JOIN sided sd ON sd.register_id = c.register_id
        ), k AS (
            SELECT t.*,
                   coalesce(NOT t.in_side AND t.iv BETWEEN 300 AND 3600 AND 86400 %% t.iv = 0
                            AND t.sec %% t.iv = 0, false) AS to_day,
                   (t.sec / nullif(t.iv, 0))::integer + 1 AS slot
            FROM t
        )
        SELECT * FROM k
    $q$, p_source);
    ANALYZE meters_store_k;
    EXECUTE $q$
        WITH side_gone AS (
            DELETE FROM meters_readingside s USING meters_store_k k
             WHERE NOT k.to_day AND k.gone AND s.register_id = k.register_id AND s.ts = k.ts
        ), side_changed AS (
            UPDATE meters_readingside s
               SET start_ts = k.start_ts, value = k.value, delta = k.delta, quality = k.quality,
                   flags = k.flags, batch_id = k.batch_id
              FROM meters_store_k k
             WHERE NOT k.to_day AND NOT k.gone AND k.in_side
               AND s.register_id = k.register_id AND s.ts = k.ts
        )
            INSERT INTO meters_readingside (register_id, ts, start_ts, value, delta, quality, flags,
                                            batch_id)
            SELECT register_id, ts, start_ts, value, delta, quality, flags, batch_id
            FROM meters_store_k k WHERE NOT to_day AND NOT gone AND NOT in_side
    $q$;
    -- Changes meet their slots by (register, day, slot) in a hash join: a merge join on
    -- (register, day) rescans each day's changes for every slot (measured: 19M rows for 200k
    -- changes).
    PERFORM set_config('enable_mergejoin', 'off', true);
    EXECUTE $q$
        WITH days AS (
            SELECT register_id, day, min(iv) AS iv, max(batch_id) AS batch_id,
                   min(ts) FILTER (WHERE NOT gone) AS first_ts
            FROM meters_store_k k WHERE to_day GROUP BY register_id, day
        ), rebuilt AS (
            SELECT y.register_id, y.day, y.iv, coalesce(y.batch_id, d.batch_id) AS batch_id,
                   d.service_point_id AS old_sp, y.first_ts,
                   array_agg(CASE WHEN ch.register_id IS NULL THEN e.v WHEN NOT ch.gone THEN ch.value END
                             ORDER BY e.i) AS vals,
                   array_agg(CASE WHEN ch.register_id IS NULL THEN e.dl
                                  WHEN NOT ch.gone THEN ch.delta END ORDER BY e.i) AS deltas,
                   array_agg(CASE WHEN ch.register_id IS NULL THEN e.q
                                  WHEN NOT ch.gone THEN ch.quality END ORDER BY e.i) AS quality,
                   array_agg(CASE WHEN ch.register_id IS NULL THEN e.f
                                  WHEN NOT ch.gone THEN ch.flags END ORDER BY e.i) AS flags,
                   array_agg(CASE WHEN ch.register_id IS NULL THEN e.sp
                                  WHEN NOT ch.gone THEN extract(epoch FROM ch.ts - ch.start_ts)::integer
                             END ORDER BY e.i) AS spans
            FROM days y
            LEFT JOIN meters_channelday d ON d.register_id = y.register_id AND d.day = y.day
            CROSS JOIN LATERAL ROWS FROM (generate_series(1, 86400 / y.iv), unnest(d.vals),
                                          unnest(d.deltas), unnest(d.quality), unnest(d.flags),
                                          unnest(d.spans)) AS e(i, v, dl, q, f, sp)
            LEFT JOIN meters_store_k ch ON ch.to_day AND ch.register_id = y.register_id AND ch.day = y.day
                          AND ch.slot = e.i
            GROUP BY y.register_id, y.day, y.iv, y.batch_id, d.batch_id, d.service_point_id, y.first_ts
        ), stored AS (
            INSERT INTO meters_channelday AS d (register_id, day, service_point_id, interval_s, vals,
                                                deltas, quality, flags, spans, batch_id)
            SELECT b.register_id, b.day,
                   coalesce(b.old_sp, (SELECT mi.service_point_id FROM meters_meterinstallation mi
                                         JOIN meters_register g ON g.meter_id = mi.meter_id
                                        WHERE g.id = b.register_id AND mi.installed_at < b.first_ts
                                          AND (mi.removed_at IS NULL OR mi.removed_at >= b.first_ts)
                                        ORDER BY mi.installed_at DESC LIMIT 1)),
                   b.iv, b.vals, b.deltas, b.quality, b.flags, b.spans, b.batch_id
            FROM rebuilt b
            WHERE EXISTS (SELECT 1 FROM unnest(b.quality) q WHERE q IS NOT NULL)
            ON CONFLICT (register_id, day) DO UPDATE
               SET vals = excluded.vals, deltas = excluded.deltas, quality = excluded.quality,
                   flags = excluded.flags, spans = excluded.spans, batch_id = excluded.batch_id,
                   service_point_id = excluded.service_point_id
        )
        DELETE FROM meters_channelday d USING rebuilt b
         WHERE d.register_id = b.register_id AND d.day = b.day
           AND NOT EXISTS (SELECT 1 FROM unnest(b.quality) q WHERE q IS NOT NULL)
    $q$;
    PERFORM set_config('enable_mergejoin', merge_joins, true);
    DROP TABLE pg_temp.meters_store_k;
END $f$;

-- The same from an array (edits, conversions, the view's triggers): the last change of a key
-- wins.
CREATE FUNCTION meters_readings_write(p_changes meters_reading_change[])
RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    IF p_changes IS NULL OR cardinality(p_changes) = 0 THEN
        RETURN;
    END IF;
    DROP TABLE IF EXISTS pg_temp.meters_write_changes;
    CREATE TEMP TABLE meters_write_changes ON COMMIT DROP AS
    SELECT DISTINCT ON (x.register_id, x.ts) x.register_id, x.ts, x.start_ts, x.value, x.delta,
           x.quality, x.flags, x.batch_id, x.gone
    FROM unnest(p_changes) WITH ORDINALITY x(register_id, ts, start_ts, value, delta, quality,
                                              flags, batch_id, gone, n)
    ORDER BY x.register_id, x.ts, x.n DESC;
    ANALYZE meters_write_changes;
    PERFORM meters_readings_store('meters_write_changes');
    DROP TABLE pg_temp.meters_write_changes;
END $f$;

-- Single-row writes through the view (staff tools, tests): the same function.
CREATE FUNCTION meters_reading_view_write() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF TG_OP = 'DELETE' OR (OLD.register_id, OLD.ts) IS DISTINCT FROM (NEW.register_id, NEW.ts)
        THEN
            PERFORM meters_readings_write(ARRAY[ROW(OLD.register_id, OLD.ts, NULL, NULL, NULL,
                                                    NULL, NULL, NULL, true)
                                                ::meters_reading_change]);
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
    END IF;
    PERFORM meters_readings_write(ARRAY[ROW(NEW.register_id, NEW.ts, NEW.start_ts, NEW.value,
                                            NEW.delta, coalesce(NEW.quality, 0),
                                            coalesce(NEW.flags, 0), NEW.batch_id, false)
                                        ::meters_reading_change]);
    RETURN NEW;
END $f$;

CREATE TRIGGER meters_reading_write INSTEAD OF INSERT OR UPDATE OR DELETE ON meters_reading
    FOR EACH ROW EXECUTE FUNCTION meters_reading_view_write();

-- The register guard (migration 0005) looks at both tables.
CREATE OR REPLACE FUNCTION meters_register_keep_readings() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    IF EXISTS (SELECT 1 FROM meters_channelday WHERE register_id = OLD.id)
       OR EXISTS (SELECT 1 FROM meters_readingside WHERE register_id = OLD.id) THEN
        RAISE EXCEPTION 'register % has readings and cannot be deleted', OLD.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN OLD;
END $f$;
"""

BACKWARD = r"""
CREATE OR REPLACE FUNCTION meters_register_keep_readings() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    IF EXISTS (SELECT 1 FROM meters_readingside WHERE register_id = OLD.id) THEN
        RAISE EXCEPTION 'register % has readings and cannot be deleted', OLD.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN OLD;
END $f$;
-- The day rows go back to one row per reading before the view goes.
INSERT INTO meters_readingside (register_id, ts, start_ts, value, delta, quality, flags, batch_id)
SELECT r.register_id, r.ts, r.start_ts, r.value, r.delta, r.quality, r.flags, r.batch_id
FROM meters_channelday d CROSS JOIN LATERAL meters_day_readings(d) r;
DROP VIEW meters_reading CASCADE;
DROP FUNCTION meters_reading_view_write();
DROP FUNCTION meters_readings_write(meters_reading_change[]);
DROP FUNCTION meters_readings_store(regclass);
DROP FUNCTION meters_readings_between(bigint[], timestamptz, timestamptz);
DROP FUNCTION meters_readings_latest(bigint, integer);
DROP FUNCTION meters_day_readings(meters_channelday);
DROP FUNCTION meters_reading_before(bigint, timestamptz, timestamptz, boolean);
DROP FUNCTION meters_reading_after(bigint, timestamptz, timestamptz, boolean);
DROP TYPE meters_reading_change;
DELETE FROM partman.part_config WHERE parent_table = 'public.meters_channelday';
DROP TABLE meters_channelday CASCADE;
DROP TABLE IF EXISTS partman.template_public_meters_channelday;
UPDATE partman.part_config
   SET parent_table = 'public.meters_reading',
       template_table = replace(template_table, 'meters_readingside', 'meters_reading')
 WHERE parent_table = 'public.meters_readingside';
ALTER TABLE IF EXISTS partman.template_public_meters_readingside
    RENAME TO template_public_meters_reading;
DO $$
DECLARE child record;
BEGIN
    FOR child IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = 'meters_readingside'::regclass LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', child.relname,
                       replace(child.relname, 'meters_readingside_', 'meters_reading_'));
    END LOOP;
END $$;
ALTER TABLE meters_readingside RENAME TO meters_reading;
"""


class Migration(migrations.Migration):
    dependencies = [("meters", "0012_importbatch_stage_choices")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
            state_operations=[
                migrations.AlterModelOptions(
                    name="reading",
                    options={
                        "managed": False,
                        "verbose_name": "reading",
                        "verbose_name_plural": "readings",
                    },
                ),
                migrations.CreateModel(
                    name="ReadingSide",
                    fields=[
                        ("pk", models.CompositePrimaryKey("register_id", "ts", blank=True, editable=False, primary_key=True, serialize=False)),
                        ("ts", models.DateTimeField()),
                        ("start_ts", models.DateTimeField(null=True)),
                        ("value", models.BigIntegerField(null=True)),
                        ("delta", models.BigIntegerField(null=True)),
                        ("quality", models.SmallIntegerField()),
                        ("flags", models.IntegerField()),
                        ("batch", models.ForeignKey(db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name="+", to="meters.importbatch")),
                        ("register", models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name="+", to="meters.register")),
                    ],
                    options={"db_table": "meters_readingside"},
                ),
                migrations.CreateModel(
                    name="ChannelDay",
                    fields=[
                        ("pk", models.CompositePrimaryKey("register_id", "day", blank=True, editable=False, primary_key=True, serialize=False)),
                        ("day", models.DateField()),
                        ("service_point_id", models.BigIntegerField(null=True)),
                        ("interval_s", models.IntegerField()),
                        ("vals", django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(null=True), size=None)),
                        ("deltas", django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(null=True), size=None)),
                        ("quality", django.contrib.postgres.fields.ArrayField(base_field=models.SmallIntegerField(null=True), size=None)),
                        ("flags", django.contrib.postgres.fields.ArrayField(base_field=models.IntegerField(null=True), size=None)),
                        ("spans", django.contrib.postgres.fields.ArrayField(base_field=models.IntegerField(null=True), size=None)),
                        ("batch_id", models.BigIntegerField(null=True)),
                        ("register", models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name="+", to="meters.register")),
                    ],
                    options={"db_table": "meters_channelday"},
                ),
            ],
        )
    ]
