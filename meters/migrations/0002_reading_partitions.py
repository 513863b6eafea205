"""The readings table: range-partitioned by month with pg_partman 4.7, BRIN on ts.

pg_partman's extension must live in its own schema (it cannot be moved later). Partitions for
older months are created on demand by the importer (partman.create_partition_time) before rows
arrive, so the default partition stays empty; beat runs partman.run_maintenance_proc for the
months ahead.
"""

import django.db.models.deletion
from django.db import migrations, models

FORWARD = r"""
CREATE TABLE meters_reading (
    register_id bigint NOT NULL REFERENCES meters_register (id) ON DELETE RESTRICT,
    ts timestamptz NOT NULL,
    start_ts timestamptz,
    value bigint,
    delta bigint,
    quality smallint NOT NULL DEFAULT 0,
    flags integer NOT NULL DEFAULT 0,
    batch_id bigint,
    PRIMARY KEY (register_id, ts),
    CONSTRAINT meters_reading_start_before_ts CHECK (start_ts IS NULL OR start_ts < ts),
    CONSTRAINT meters_reading_quality_known CHECK (quality BETWEEN 0 AND 4)
) PARTITION BY RANGE (ts);
CREATE INDEX meters_reading_ts_brin ON meters_reading USING brin (ts);

CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;
SELECT partman.create_parent(
    p_parent_table => 'public.meters_reading',
    p_control => 'ts',
    p_type => 'native',
    p_interval => 'monthly',
    p_premake => 3,
    p_start_partition => to_char(date_trunc('month', now()) - interval '1 month',
                                 'YYYY-MM-DD HH24:MI:SS')
);
UPDATE partman.part_config
   SET infinite_time_partitions = true, retention = NULL
 WHERE parent_table = 'public.meters_reading';
"""

BACKWARD = r"""
DELETE FROM partman.part_config WHERE parent_table = 'public.meters_reading';
DROP TABLE meters_reading CASCADE;
"""


class Migration(migrations.Migration):
    dependencies = [("meters", "0001_initial")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
            state_operations=[
                migrations.CreateModel(
                    name="Reading",
                    fields=[
                        ("pk", models.CompositePrimaryKey("register_id", "ts", blank=True, editable=False, primary_key=True, serialize=False)),
                        ("ts", models.DateTimeField()),
                        ("start_ts", models.DateTimeField(null=True)),
                        ("value", models.BigIntegerField(null=True)),
                        ("delta", models.BigIntegerField(null=True)),
                        ("quality", models.SmallIntegerField(choices=[(0, "actual"), (1, "pending"), (2, "estimated"), (3, "edited"), (4, "suspect")])),
                        ("flags", models.IntegerField()),
                        ("batch", models.ForeignKey(db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name="+", to="meters.importbatch")),
                        ("register", models.ForeignKey(on_delete=django.db.models.deletion.DO_NOTHING, related_name="+", to="meters.register")),
                    ],
                    options={
                        "verbose_name": "reading",
                        "verbose_name_plural": "readings",
                        "db_table": "meters_reading",
                    },
                ),
            ],
        )
    ]
