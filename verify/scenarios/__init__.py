"""Every scenario module, imported for its registrations (verify.report.SCENARIOS)."""

from __future__ import annotations

from verify.scenarios import access, hostile, imports, money

__all__ = ["access", "hostile", "imports", "money"]
