"""manage.py db_grant_app_role ROLE: the privileges the running app needs, and no more.

Run migrations as the tables' owner and the app as ROLE. ROLE may read and write every table,
except that on append-only tables (those guarded by the append_only_reject() trigger: the audit
log, later the ledger) it may only SELECT and INSERT. Only an owner or superuser can switch a
trigger off, so ROLE cannot rewrite history. Run it again after migrations that add tables.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from psycopg import sql

_APPEND_ONLY_TABLES = """
    SELECT DISTINCT c.relname
    FROM pg_trigger t
    JOIN pg_proc p ON p.oid = t.tgfoid
    JOIN pg_class c ON c.oid = t.tgrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE p.proname = 'append_only_reject' AND n.nspname = 'public'
    ORDER BY c.relname
"""


class Command(BaseCommand):
    help = "Grant an existing database role what the app needs; append-only tables stay so."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", help="an existing PostgreSQL role, e.g. smartmeter_app")

    def handle(self, *args: Any, **options: Any) -> None:
        role = sql.Identifier(options["role"])
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [options["role"]])
            if cursor.fetchone() is None:
                raise CommandError(f"role {options['role']!r} does not exist; create it first")
            cursor.execute(_APPEND_ONLY_TABLES)
            append_only = [name for (name,) in cursor.fetchall()]
            statements = [
                sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role),
                sql.SQL(
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}"
                ).format(role),
                sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(role),
                *(
                    sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON {} FROM {}").format(
                        sql.Identifier(table), role
                    )
                    for table in append_only
                ),
            ]
            for statement in statements:
                cursor.execute(statement.as_string(cursor.connection))
        self.stdout.write(
            f"Granted {options['role']} read/write on all tables; "
            f"append-only (SELECT, INSERT): {', '.join(append_only) or 'none'}"
        )
