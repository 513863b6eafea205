"""Reads used by the meters admin (kept apart from meters/selectors.py while it is split)."""

from __future__ import annotations

import datetime as dt

from meters.models import ReadingEdit, Register


def reading_edit_latest(*, register: Register, ts: dt.datetime) -> ReadingEdit:
    """The newest edit of one reading: the one the admin has just recorded."""
    return ReadingEdit.objects.filter(register=register, ts=ts).latest("pk")
