"""Declarative database triggers shared by the apps (django-pgtrigger)."""

from __future__ import annotations

from typing import Any

import pgtrigger


class AppendOnly(pgtrigger.Protect):
    """Refuses UPDATE and DELETE of a row, so history can only be appended to.

    A `pgtrigger.Protect` whose error keeps the wording and SQLSTATE of the raw-SQL guard it
    replaced (`insufficient_privilege`, "<table> is append-only: <op> refused"), which callers
    and tests match. TRUNCATE is not covered here: pgtrigger's statement-level Protect needs a
    transition table, and TRUNCATE has none, so each app keeps its TRUNCATE guard as raw SQL
    (the audit app's `append_only_reject()`, which also lets a test database's flush through).

    pgtrigger skips any of its triggers named in the session setting `pgtrigger.ignore`, and
    any role can set that; what keeps the app's role from rewriting rows is that
    `manage.py db_grant_app_role` revokes UPDATE and DELETE on these tables.
    """

    def __init__(self, *, name: str) -> None:
        super().__init__(name=name, operation=pgtrigger.Update | pgtrigger.Delete)

    def get_func(self, model: Any) -> str:
        return self.format_sql(
            """
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
            """
        )
