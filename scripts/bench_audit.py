"""`make bench`, audit part: audited writes per second from 1 and from 2 worker processes in
different tenants, with the product's chain per tenant root and with the old single global lock
as the baseline, both measured in the same run (issue 12; goal: 2 workers >= 1.6x 1 worker).

On a database of its own (`smartmeter_bench_audit` on 127.0.0.1:5432, or
BENCH_AUDIT_DATABASE_URL; the name must contain `bench`; created, migrated and dropped again
unless --keep):

1. two tenants: two top-level organisations with an account each (the product's services).
2. two worker processes (spawned: each its own Django and its own PostgreSQL connection), each
   writing in its own tenant. One write is one transaction of the product's denial service
   (`access_denied_record`: one audit entry, its chain lock held to the commit), as a flood
   of refused requests makes them.
3. configurations, measured --rounds times in turns for --duration seconds each, so that a
   busy neighbour on the shared machine weighs on all of them alike; the best round counts:

     chain, 1 worker     worker 1 alone
     chain, 2 workers    both workers at once, one tenant each
     one lock, 1 / 2     the same, each transaction first taking the single advisory lock
                         that every audited write took before chains per tenant (the
                         baseline: what the old scheme allowed on this machine, now)

   --async-commit runs the workers with synchronous_commit off, so that the writes are bound
   by the CPU (2 cores here: 2 Python processes and 2 PostgreSQL backends) instead of by
   waiting for the WAL flush; informational, not how the product commits.
4. `audit_chain_verify` over everything written: every chain must verify, and hold exactly
   the entries the workers counted.

A benchmark reports; it exits 1 only if the chains do not verify.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(BASE_DIR / "scripts"))

from benchkit import drop_database, prepare_database  # noqa: E402 - after the path is set

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/smartmeter_bench_audit"
# The key of the one advisory lock every audited write took before chains per tenant.
OLD_SCHEME_LOCK = 0x5A4D_A0D1
GOAL = 1.6


def _environment(url: str) -> None:
    os.environ.update(
        {
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "portal.settings.local",
            "DJANGO_DEBUG": "0",
            "CELERY_TASK_ALWAYS_EAGER": "1",
            "LOG_LEVEL": "WARNING",
        }
    )


def _worker(url: str, account_id: int, name: str, commands: Connection, async_commit: bool) -> None:
    """Write denials in one tenant whenever told: ("run", one_lock, start_at, end_at) answers
    the number of writes committed between those two instants of the shared monotonic clock."""
    _environment(url)
    import django

    django.setup()
    from django.db import connection, transaction

    if async_commit:
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")

    from portal.audit.actors import RequestContext, SystemActor
    from portal.tenancy.models import Account
    from portal.tenancy.scopes import Scope
    from portal.tenancy.services.access import access_denied_record

    account = Account.objects.get(pk=account_id)
    actor = SystemActor(f"bench:{name}", context=RequestContext(ip="127.0.0.1"))

    def write(one_lock: bool) -> None:
        with transaction.atomic():
            if one_lock:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [OLD_SCHEME_LOCK])
            access_denied_record(
                actor=actor, scope=Scope.AUDIT_READ, path="/bench/denied/", account=account
            )

    write(False)  # warm: connection, statement plans
    commands.send("ready")
    while True:
        command = commands.recv()
        if command[0] == "stop":
            break
        _run, one_lock, start_at, end_at = command
        time.sleep(max(0.0, start_at - time.monotonic()))
        done = 0
        while time.monotonic() < end_at:
            write(one_lock)
            done += 1
        commands.send(done)
    connection.close()


@dataclass
class _Workers:
    pipes: list[Connection]
    processes: list[Any]

    def run(self, count: int, *, one_lock: bool, duration: float) -> float:
        """Return the writes per second of the first `count` workers running together."""
        start_at = time.monotonic() + 0.3
        end_at = start_at + duration
        for pipe in self.pipes[:count]:
            pipe.send(("run", one_lock, start_at, end_at))
        done = sum(int(pipe.recv()) for pipe in self.pipes[:count])
        return done / duration

    def stop(self) -> None:
        for pipe in self.pipes:
            pipe.send(("stop",))
        for process in self.processes:
            process.join(timeout=30)


def _tenants() -> list[int]:
    from portal.audit.actors import SystemActor
    from portal.tenancy.services.accounts import account_create
    from portal.tenancy.services.organisations import organisation_create

    actor = SystemActor("command:bench")
    accounts = []
    for name in ("Bench tenant A", "Bench tenant B"):
        organisation = organisation_create(name=name, actor=actor)
        account = account_create(
            name=f"{name} account",
            payment_mode="prepaid",
            currency="TWD",
            time_zone="Asia/Taipei",
            organisation=organisation,
            actor=actor,
        )
        accounts.append(account.pk)
    return accounts


def _start(url: str, accounts: list[int], *, async_commit: bool) -> _Workers:
    context = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for index, account_id in enumerate(accounts):
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_worker,
            args=(url, account_id, f"worker-{index + 1}", theirs, async_commit),
            daemon=True,
        )
        process.start()
        pipes.append(ours)
        processes.append(process)
    for pipe in pipes:
        if pipe.recv() != "ready":
            raise SystemExit("a worker did not start")
    return _Workers(pipes, processes)


CONFIGURATIONS = (("chain", False, 1), ("chain", False, 2), ("lock", True, 1), ("lock", True, 2))


def measure(
    url: str, *, duration: float, rounds: int, async_commit: bool = False
) -> dict[tuple[str, int], float]:
    """Best writes/s of each configuration over `rounds` rounds taken in turns."""
    workers = _start(url, _tenants(), async_commit=async_commit)
    best: dict[tuple[str, int], float] = {}
    try:
        for _round in range(rounds):
            for scheme, one_lock, count in CONFIGURATIONS:
                rate = workers.run(count, one_lock=one_lock, duration=duration)
                best[scheme, count] = max(best.get((scheme, count), 0.0), rate)
    finally:
        workers.stop()
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every configuration")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="workers commit with synchronous_commit off: CPU-bound writes instead of waits "
        "for the WAL flush (not how the product commits; shows scaling without the disk)",
    )
    args = parser.parse_args()
    url = os.environ.get("BENCH_AUDIT_DATABASE_URL", DEFAULT_URL)
    prepare_database(url)
    _environment(url)
    import django

    django.setup()
    from django.db import connection

    from portal.audit.models import AuditLogEntry
    from portal.audit.selectors import audit_chain_verify

    try:
        best = measure(
            url, duration=args.duration, rounds=args.rounds, async_commit=args.async_commit
        )
        began = time.perf_counter()
        report = audit_chain_verify()
        verify_seconds = time.perf_counter() - began
        entries = AuditLogEntry.objects.count()
    finally:
        connection.close()
        if not args.keep:
            drop_database(url)
    print(
        "Audit log benchmark (issue 12): audited writes/s, one denial entry per transaction; "
        f"best of {args.rounds} rounds of {args.duration:g} s per configuration, in turns"
        + (" (synchronous_commit off)" if args.async_commit else "")
    )
    print(f"  {'scheme':<34}{'1 worker':>12}{'2 workers':>12}{'ratio':>9}  goal")
    for scheme, label in (
        ("chain", "chain per tenant root (product)"),
        ("lock", "one global lock (old, baseline)"),
    ):
        one, two = best[scheme, 1], best[scheme, 2]
        ratio = two / one if one else 0.0
        goal = (
            f">= {GOAL}x {'PASS' if ratio >= GOAL else 'BELOW'}"
            if scheme == "chain"
            else "(baseline)"
        )
        print(f"  {label:<34}{one:>10,.0f}/s{two:>10,.0f}/s{ratio:>8.2f}x  {goal}")
    print(
        f"  2 workers, chains vs one lock: {best['chain', 2] / best['lock', 2]:.2f}x; "
        f"audit_verify: {'OK' if report.ok else 'BROKEN'} {report.entries:,} of {entries:,} "
        f"rows in {report.chains} chains in {verify_seconds:.1f} s"
    )
    return 0 if report.ok and report.entries == entries else 1


if __name__ == "__main__":
    raise SystemExit(main())
