"""Reads of one stored row by primary key, for admin modules.

Admin pages compare a submitted form with the row as stored, or load the row an admin
action works on. Those reads live here so that interface modules never query the ORM
themselves (the structural test in tests/portal/tenancy/test_scoping_structure.py).
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model
from django.shortcuts import get_object_or_404

M = TypeVar("M", bound=Model)


def stored_row(model: type[M], pk: Any, *related: str) -> M:
    """The row as stored; raises ``model.DoesNotExist`` when it is gone."""
    return model._default_manager.select_related(*related).get(pk=pk)


def row_or_404(model: type[M], pk: Any, *related: str) -> M:
    """The row as stored, or Http404 (an admin URL naming a row that does not exist)."""
    return get_object_or_404(model._default_manager.select_related(*related), pk=pk)
