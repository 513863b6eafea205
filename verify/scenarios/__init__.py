"""Every scenario module, imported for its registrations (verify.report.SCENARIOS)."""

from __future__ import annotations

from verify.scenarios import imports, money

__all__ = ["imports", "money"]
