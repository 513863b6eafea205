"""`python -m verify`: run the scenarios and print expected against observed.

    python -m verify               every scenario, at full scale (`make verify`)
    python -m verify --fast        the fast subset at a small scale (what `make test` runs)
    python -m verify --only TEXT   the scenarios whose name contains TEXT
    python -m verify --list        list them

Exit status 0 when every check holds, 1 otherwise. The table is Markdown, so that the README's
"Faults we survive" can show a run as printed; it is also written to .verify/report.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FULL_SCALE = 1_209_600  # 360 meters x 5 weeks of quarter hours, as in the report that found fault 1
FAST_SCALE = 100_800  # 30 meters


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="the fast subset, small scale")
    parser.add_argument("--only", action="append", default=[], help="names containing this")
    parser.add_argument("--scale", type=int, help="readings per import file")
    parser.add_argument("--list", action="store_true", help="list the scenarios and stop")
    args = parser.parse_args()

    from verify.report import SCENARIOS, run_one, table
    from verify.scenarios import (  # noqa: F401 - registers the scenarios
        access,
        hostile,
        imports,
        money,
    )
    from verify.world import STATE, World

    chosen = [
        item
        for item in SCENARIOS
        if (item.fast or not args.fast)
        and (not args.only or any(text in item.name for text in args.only))
    ]
    if args.list:
        for item in chosen:
            print(f"{'fast' if item.fast else '    '}  {item.name}")
        return 0
    if not chosen:
        print("no scenario matches", file=sys.stderr)
        return 2
    world = World(scale=args.scale or (FAST_SCALE if args.fast else FULL_SCALE), fast=args.fast)
    outcomes = []
    try:
        world.start()
        for item in chosen:
            print(f"[make verify] {item.name} ...", flush=True)
            outcome = run_one(world, item)
            print(
                f"[make verify] {item.name}: {'ok' if outcome.ok else 'FAILED'} "
                f"in {outcome.seconds:.0f} s",
                flush=True,
            )
            outcomes.append(outcome)
    finally:
        world.stop()
    report = table(outcomes)
    (STATE / "report.md").write_text(report + "\n")
    print(report)
    failed = [outcome.scenario.name for outcome in outcomes if not outcome.ok]
    print(
        f"\n{len(outcomes) - len(failed)} of {len(outcomes)} scenarios hold"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
