"""Applying a set of field changes and describing them for the audit log."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any


def apply_changes(
    instance: object,
    changes: Mapping[str, Any],
    *,
    allowed: Collection[str],
    describe: Callable[[Any], Any] = lambda value: value,
) -> dict[str, dict[str, Any]]:
    """Set `changes` on `instance`; return {field: {"before", "after"}} for values that differ.

    :raises ValueError: if a field outside `allowed` is named.
    """
    unknown = set(changes) - set(allowed)
    if unknown:
        raise ValueError(f"cannot change {sorted(unknown)} here")
    diff: dict[str, dict[str, Any]] = {}
    for name, value in changes.items():
        before = getattr(instance, name)
        if before != value:
            setattr(instance, name, value)
            diff[name] = {"before": describe(before), "after": describe(value)}
    return diff
