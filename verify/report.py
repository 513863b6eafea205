"""Scenarios, their checks, and the table `make verify` prints.

A scenario is a function of the World that returns checks: each names a figure, what it must be
and what was seen. A scenario passes when every check does; one that raises fails with its
error as the observed figure, so that one broken scenario never hides the others.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from verify.world import World


@dataclass(frozen=True)
class Check:
    figure: str
    expected: object
    observed: object

    @property
    def ok(self) -> bool:
        return self.expected == self.observed


@dataclass
class Scenario:
    name: str
    group: str
    fault: str
    run: Callable[[World], list[Check]]
    fast: bool


@dataclass
class Outcome:
    scenario: Scenario
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and bool(self.checks) and all(check.ok for check in self.checks)


SCENARIOS: list[Scenario] = []


def scenario(
    name: str, *, group: str, fault: str, fast: bool = False
) -> Callable[[Callable[[World], list[Check]]], Callable[[World], list[Check]]]:
    """Register a scenario; `fast` ones also run in `make test` (at a smaller scale)."""

    def register(run: Callable[[World], list[Check]]) -> Callable[[World], list[Check]]:
        if any(known.name == name for known in SCENARIOS):
            raise ValueError(f"two scenarios are called {name}")
        SCENARIOS.append(Scenario(name=name, group=group, fault=fault, run=run, fast=fast))
        return run

    return register


def run_one(world: World, item: Scenario) -> Outcome:
    outcome = Outcome(item)
    began = time.monotonic()
    try:
        world.fresh()
        outcome.checks = item.run(world)
    except Exception as error:  # noqa: BLE001 - reported as the scenario's failure
        outcome.error = f"{type(error).__name__}: {error}"
        outcome.checks.append(Check("scenario ran to its end", "yes", outcome.error))
        traceback.print_exc()
    finally:
        world.stop_workers()
    outcome.seconds = time.monotonic() - began
    return outcome


def _cell(value: object) -> str:
    text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    return text.replace("|", "/")


def table(outcomes: list[Outcome]) -> str:
    """A Markdown table, one row per check, that reads the same in a terminal and the README."""
    lines = [
        "| scenario | fault | figure | expected | observed | |",
        "|---|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        for index, check in enumerate(outcome.checks):
            first = index == 0
            name = f"{outcome.scenario.name} ({outcome.seconds:.0f} s)" if first else ""
            fault = outcome.scenario.fault if first else ""
            mark = "ok" if check.ok else "**FAIL**"
            lines.append(
                f"| {name} | {fault} | {check.figure} | {_cell(check.expected)} | "
                f"{_cell(check.observed)} | {mark} |"
            )
    return "\n".join(lines)
