"""meters.units: the one rule for base and display units."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from meters.units import (
    DisplayUnit,
    display_unit,
    in_display_units,
    kind_base_unit,
    kind_base_unit_sql,
)


@pytest.mark.parametrize(
    ("base", "shown"),
    [("Wh", DisplayUnit("kWh", 1000)), ("L", DisplayUnit("m³", 1000))],
)
def test_a_base_unit_is_shown_in_its_display_unit(base: str, shown: DisplayUnit) -> None:
    assert display_unit(base) == shown


def test_an_unknown_base_unit_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="unknown base unit"):
        display_unit("therm")


@pytest.mark.parametrize(
    ("kind", "base"),
    [("electricity", "Wh"), ("heat", "Wh"), ("water", "L"), ("gas", "L")],
)
def test_each_kind_has_a_default_base_unit(kind: str, base: str) -> None:
    assert kind_base_unit(kind) == base


def test_base_units_convert_exactly() -> None:
    assert in_display_units(1234, "Wh") == Decimal("1.234")
    assert in_display_units(1, "L") == Decimal("0.001")


@pytest.mark.django_db
def test_the_sql_default_unit_is_the_python_one() -> None:
    kinds = ["electricity", "heat", "water", "gas"]
    with connection.cursor() as cursor:
        query = f"SELECT k, {kind_base_unit_sql('k')} FROM unnest(%s::text[]) AS k"  # noqa: S608
        cursor.execute(query, [kinds])
        assert dict(cursor.fetchall()) == {kind: kind_base_unit(kind) for kind in kinds}
