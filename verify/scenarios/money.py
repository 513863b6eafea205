"""Money under faults: webhooks that credit a wallet, PostgreSQL crashed the moment one was
acknowledged, duplicated and forged deliveries at once, and a charging day interrupted across
midnight. The goal of each: 0 credits lost, 0 double credits, 0 uncharged days, 0 double
charges.

Webhooks go over HTTP to the portal served by gunicorn, signed as the sandbox provider signs
them; the charge runs in a Celery worker, the real task, and the day after is then run
explicitly (`prepaid_charge_due` with an `as_of` after the next local midnight), as beat would
run it the next morning.
"""

from __future__ import annotations

import datetime as dt
import http.client
import itertools
import json
import threading
import time
import zoneinfo
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from portal.lib.periods import local_midnight
from verify.processes import say
from verify.report import Check, scenario
from verify.world import World, close_connections

if TYPE_CHECKING:
    from billing.payments.sandbox import SandboxProvider
    from verify.processes import WebServer

TZ = "Asia/Taipei"
CURRENCY = "TWD"
_amounts = itertools.count(1)


@dataclass(frozen=True)
class Between(Check):
    """A figure that holds strictly between two bounds (a fault that must land mid-run)."""

    low: int = 0
    high: int = 0

    @property
    def ok(self) -> bool:
        return isinstance(self.observed, int) and self.low < self.observed < self.high


def execute(statement: str, params: dict[str, Any] | None = None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def fetch_row(statement: str, params: dict[str, Any]) -> tuple[object, ...]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return tuple(cursor.fetchone() or ())


# --- Top-ups and their webhooks -----------------------------------------------------------


def _provider() -> SandboxProvider:
    from billing.payments.providers import provider_get
    from billing.payments.sandbox import SandboxProvider

    provider = provider_get(SandboxProvider.name)
    assert isinstance(provider, SandboxProvider)  # noqa: S101 - provider_get("sandbox")
    return provider


def _amount() -> int:
    # Distinct amounts, none ending in 408 minor units (the sandbox's simulated timeout).
    return 10_000 + 100 * next(_amounts)


@dataclass(frozen=True)
class Paid:
    """A pending top-up whose payment the sandbox has taken, and the webhook saying so."""

    topup_id: int
    wallet_id: int
    amount: int
    body: bytes
    headers: dict[str, str]


def paid_topup(label: str) -> Paid:
    """A prepaid account and wallet, a top-up started at the sandbox and paid there; the
    webhook is returned, not sent."""
    from django.utils import timezone

    from billing.models import TopUp
    from billing.services.ledger import wallet_create
    from billing.services.topups import topup_checkout_start, topup_create
    from portal.audit.actors import SystemActor
    from portal.tenancy.services.accounts import account_create

    actor = SystemActor("verify")
    now = timezone.now()
    account = account_create(
        name=f"Verify {label}",
        payment_mode="prepaid",
        currency=CURRENCY,
        time_zone=TZ,
        actor=actor,
    )
    wallet = wallet_create(account=account, actor=actor)
    amount = _amount()
    topup, _new = topup_create(
        account=account,
        amount=amount,
        idempotency_key=f"verify-{label}",
        actor=actor,
        as_of=now,
        provider="sandbox",
    )
    provider = _provider()
    topup, _url = topup_checkout_start(topup=topup, actor=actor, as_of=now, provider=provider)
    if topup.status != TopUp.Status.PENDING:
        raise RuntimeError(f"the sandbox left top-up {topup.pk} {topup.status}, not pending")
    body, headers = provider.checkout_complete(reference=topup.public_id, paid=True, as_of=now)
    return Paid(topup.pk, wallet.pk, amount, body, headers)


def webhook_path() -> str:
    from django.urls import reverse

    return reverse("billing:payment_webhook", kwargs={"provider": "sandbox"})


def post(server: WebServer, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
    """POST a webhook; return the status and the endpoint's `result` (or the raw answer)."""
    url = urlparse(server.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
    try:
        conn.request("POST", webhook_path(), body=body, headers=dict(headers))
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        answer = json.loads(raw)
        result = str(answer.get("result", answer.get("error", "")))
    except (ValueError, AttributeError):
        result = raw[:80].decode(errors="replace")
    return response.status, result


def deliver(server: WebServer, paid: Paid, *, attempts: int = 10) -> tuple[int, str]:
    """Send the webhook as a provider does: again after a 5xx or no answer, until a 2xx/4xx."""
    status, result = 0, "not sent"
    for _attempt in range(attempts):
        try:
            status, result = post(server, paid.body, paid.headers)
        except OSError as error:
            status, result = 0, f"{type(error).__name__}: {error}"
        if 200 <= status < 500:
            break
        time.sleep(0.5)
    return status, result


@dataclass(frozen=True)
class Credits:
    succeeded: int
    pending: int
    exact: int  # wallets holding exactly the top-up's amount
    entries: int  # top-up journal entries, over all the top-ups


def credits(paid: list[Paid]) -> Credits:
    from billing.models import JournalEntry, TopUp, Wallet

    topups = {t.pk: t for t in TopUp.objects.filter(pk__in=[p.topup_id for p in paid])}
    balances = dict(
        Wallet.objects.filter(pk__in=[p.wallet_id for p in paid]).values_list("pk", "balance")
    )
    return Credits(
        succeeded=sum(t.status == "succeeded" for t in topups.values()),
        pending=sum(t.status == "pending" for t in topups.values()),
        exact=sum(balances.get(p.wallet_id) == p.amount for p in paid),
        entries=JournalEntry.objects.filter(
            kind=JournalEntry.Kind.TOPUP, idempotency_key__in=[f"topup:{p.topup_id}" for p in paid]
        ).count(),
    )


# --- 1. PostgreSQL crashed right after a webhook answered 200 "credited" ---------------------


@scenario(
    "webhook: PostgreSQL crashed right after 200 credited",
    group="money",
    fault="SIGKILL of the postmaster and backends as the 200 arrives",
    fast=True,
)
def crash_after_credit(world: World) -> list[Check]:
    tries = 3 if world.fast else 20
    # The settings a crash puts to the test, as the application's own connection sees them.
    durable = {name: str(world.scalar(f"SHOW {name}")) for name in ("synchronous_commit", "fsync")}
    server = world.web()
    paid: list[Paid] = []
    answers: list[tuple[int, str]] = []
    for number in range(tries):
        paid.append(paid_topup(f"crash-{number}"))
        # Everything but the webhook's own commit is on disk before it is sent.
        execute("CHECKPOINT")
        answers.append(deliver(server, paid[-1]))
        world.crash_database()
        world.restart_database()
    acknowledged = sum(answer == (200, "credited") for answer in answers)
    found = credits(paid)
    return [
        Check("synchronous_commit (app's connection)", "on", durable["synchronous_commit"]),
        Check("fsync (app's connection)", "on", durable["fsync"]),
        Check("webhooks answered 200 credited", tries, acknowledged),
        Check(
            "credits present after restart / acknowledged",
            f"{acknowledged} / {acknowledged}",
            f"{found.succeeded} / {acknowledged}",
        ),
        Check("top-ups left pending", 0, found.pending),
        Check("wallets holding exactly their top-up", tries, found.exact),
        Check("top-up journal entries (one per credit)", tries, found.entries),
    ]


# --- 2. Duplicate, concurrent and forged deliveries ------------------------------------------

GENUINE = 12


def _forgeries(paid: Paid, provider: SandboxProvider) -> list[tuple[str, bytes, dict[str, str]]]:
    """Copies an attacker can make of a captured webhook, without the signing key."""
    from django.utils import timezone

    event = json.loads(paid.body)
    event["data"]["amount"] = paid.amount * 100
    altered = json.dumps(event, separators=(",", ":")).encode()
    # An event of the attacker's own making: a new id, so no genuine delivery overwrites it.
    event["id"] = f"{event['id']}_forged"
    invented = json.dumps(event, separators=(",", ":")).encode()
    timestamp = paid.headers["Sandbox-Signature"].split(",")[0]
    bad = {**paid.headers, "Sandbox-Signature": f"{timestamp},v1={'0' * 64}"}
    # A delivery captured ten minutes ago and replayed: a valid signature, but too old.
    stale = provider.signed_headers(body=paid.body, as_of=timezone.now() - dt.timedelta(minutes=10))
    unsigned = {k: v for k, v in paid.headers.items() if k != "Sandbox-Signature"}
    return [
        *[("bad signature", paid.body, bad)] * 3,
        *[("altered amount", altered, paid.headers)] * 3,
        *[("replayed after 10 min", paid.body, stale)] * 3,
        *[("invented event, unsigned", invented, unsigned)] * 3,
    ]


@dataclass
class Round:
    credited: int = 0
    genuine_2xx: int = 0
    forged_4xx: int = 0
    forged_2xx: int = 0
    other: int = 0


def _send_round(server: WebServer, paid: Paid) -> Round:
    sends: list[tuple[bool, bytes, dict[str, str]]] = [
        (True, paid.body, paid.headers) for _ in range(GENUINE)
    ]
    sends += [(False, body, headers) for _kind, body, headers in _forgeries(paid, _provider())]
    # All at once: each thread waits at the barrier, then sends.
    barrier = threading.Barrier(len(sends))

    def send(item: tuple[bool, bytes, dict[str, str]]) -> tuple[bool, int, str]:
        genuine, body, headers = item
        barrier.wait(timeout=60)
        status, result = post(server, body, headers)
        return genuine, status, result

    with ThreadPoolExecutor(max_workers=len(sends)) as pool:
        answers = list(pool.map(send, sends))
    outcome = Round()
    for genuine, status, result in answers:
        if genuine and status == 200:
            outcome.genuine_2xx += 1
            outcome.credited += result == "credited"
        elif not genuine and 400 <= status < 500:
            outcome.forged_4xx += 1
        elif not genuine and 200 <= status < 300:
            outcome.forged_2xx += 1
        else:
            outcome.other += 1
    return outcome


@scenario(
    "webhook: 12 concurrent duplicates and 12 forged copies",
    group="money",
    fault="the same signed event 12 times at once, with forged copies",
    fast=True,
)
def duplicate_and_forged(world: World) -> list[Check]:
    from django.db.models import Sum

    from billing.models import WebhookEvent, WebhookRejection

    rounds = 1 if world.fast else 10
    # As many server processes as the machine takes, so that deliveries really overlap.
    server = world.web(workers=4)
    paid = [paid_topup(f"dup-{number}") for number in range(rounds)]
    totals = Round()
    for item in paid:
        outcome = _send_round(server, item)
        for name in vars(totals):
            setattr(totals, name, getattr(totals, name) + getattr(outcome, name))
    forged = len(_forgeries(paid[0], _provider())) * rounds
    found = credits(paid)
    events = WebhookEvent.objects.filter(provider="sandbox")
    # Every stored row must be a verified, genuine body: the amount its top-up was for.
    asked = {json.loads(item.body)["data"]["reference"]: item.amount for item in paid}
    stored_forged = 0
    for verified, body in events.values_list("verified", "body"):
        try:
            data = json.loads(body)["data"]
            genuine = verified and asked.get(data["reference"]) == data["amount"]
        except (ValueError, KeyError, TypeError):
            genuine = False
        stored_forged += not genuine
    rejected = WebhookRejection.objects.aggregate(total=Sum("count"))["total"] or 0
    return [
        Check(
            "deliveries (genuine + forged)",
            GENUINE * rounds + forged,
            totals.genuine_2xx + totals.forged_4xx + totals.forged_2xx + totals.other,
        ),
        Check("genuine deliveries answered 200", GENUINE * rounds, totals.genuine_2xx),
        Check("answered 'credited' (once per top-up)", rounds, totals.credited),
        Check("forged copies refused (4xx)", forged, totals.forged_4xx),
        Check("forged copies accepted (2xx)", 0, totals.forged_2xx),
        Check("webhook rows stored (verified events only)", rounds, events.count()),
        Check("unverified or altered bodies stored", 0, stored_forged),
        Check(
            "deliveries counted on the stored rows",
            GENUINE * rounds,
            events.aggregate(total=Sum("deliveries"))["total"] or 0,
        ),
        Check("refusals counted (WebhookRejection)", forged, rejected),
        Check("top-ups succeeded", rounds, found.succeeded),
        Check("wallets holding the amount once", rounds, found.exact),
        Check("top-up journal entries (double credits: 0)", rounds, found.entries),
    ]


# --- 3. A charging day interrupted across midnight ----------------------------------------

# Rollups of a day, after the bench's first one (scripts/bench_charging.py builds the accounts).
_MORE_DAYS = """
-- Hourly rollups are day rows of arrays (meters migration 0014): one row per hour here,
-- merged by meters_hourly_load(), each day row written once.
CREATE TEMP TABLE seed_hours (service_point_id bigint, direction varchar(8), hour timestamptz,
                              account_id bigint, consumption bigint, estimated bigint,
                              suspect_count integer, reading_count integer);
INSERT INTO seed_hours (service_point_id, direction, hour, account_id, consumption,
                                 estimated, suspect_count, reading_count)
SELECT s.service_point_id, 'import', %(start)s::timestamptz + make_interval(hours => h),
       s.account_id, 200 + (s.account_id * 7 + h * 13) %% 900, 0, 0, 4
FROM meters_supply s CROSS JOIN generate_series(24, %(hours)s - 1) h;
SELECT meters_hourly_load('seed_hours');
DROP TABLE seed_hours;
UPDATE billing_wallet SET emergency_credit = 1000000000;
ANALYZE;
"""


def _accounts(world: World) -> tuple[int, int]:
    """Accounts and accounts per transaction: the report's 40,000 in chunks of 5,000."""
    return (400, 50) if world.fast else (40_000, 5_000)


def _charging_world(*, accounts: int, first: dt.date, days: int) -> tuple[float, float]:
    """`accounts` prepaid accounts in TZ with hourly rollups for `days` days from `first`, all
    charged for `first` already (so that each is an account being charged day after day).
    Returns the seconds the rows in SQL took, and the charge of `first`."""
    from bench_charging import SETUP, TOU  # scripts/, on the path as verify.processes puts it
    from django.db import connection

    from billing.services.charging import prepaid_charge_day
    from portal.audit.actors import SystemActor

    began = time.monotonic()
    start = local_midnight(first, TZ)
    with connection.cursor() as cursor:
        cursor.execute(SETUP, {"n": accounts, "tz": TZ, "tou": TOU, "start": start})
        cursor.execute(_MORE_DAYS, {"start": start, "hours": 24 * days})
    rows = time.monotonic() - began
    prepaid_charge_day(
        day=first,
        time_zone=TZ,
        actor=SystemActor("verify"),
        as_of=local_midnight(first + dt.timedelta(days=1), TZ) + dt.timedelta(hours=7),
    )
    return rows, time.monotonic() - began - rows


def _charged_on(day: dt.date) -> int:
    from billing.models import DailyCharge

    return DailyCharge.objects.filter(day=day).count()


class _Landed(Exception):
    def __init__(self, count: int) -> None:
        self.count = count


def _stop_mid_run(*, day: dt.date, accounts: int, fault: Callable[[], None]) -> int:
    """Wait until the running charge has committed part of `day`, then apply `fault` while
    holding its next commit off (a SHARE lock on the charges table), so that the fault lands
    between two chunks; return how many accounts were charged for `day` by then."""
    from django.db import connection, transaction

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("LOCK TABLE billing_dailycharge IN SHARE MODE")
                cursor.execute("SELECT count(*) FROM billing_dailycharge WHERE day = %s", [day])
                (count,) = cursor.fetchone() or (0,)
                if 0 < count < accounts:
                    fault()
                    raise _Landed(int(count))
        except _Landed as landed:
            close_connections()  # a crashed cluster's connection, or one just rolled back
            return landed.count
        if count:
            return int(count)  # too late: the run ended before the fault could land
        time.sleep(0.01)
    raise TimeoutError(f"the charge of {day} did not begin in 600 s")


def _charge_checks(*, days: list[dt.date], accounts: int) -> list[Check]:
    uncharged, doubles, entries_twice, wallets_off = fetch_row(
        """
        SELECT
          (SELECT count(*) FROM meters_supply s CROSS JOIN unnest(%(days)s::date[]) d(day)
           WHERE NOT EXISTS (SELECT 1 FROM billing_dailycharge c
                             WHERE c.account_id = s.account_id
                               AND c.service_point_id = s.service_point_id
                               AND c.day = d.day)),
          (SELECT count(*) - count(DISTINCT (account_id, service_point_id, day))
           FROM billing_dailycharge),
          (SELECT count(*) FROM (SELECT 1 FROM billing_journalentry
                                 WHERE kind = 'charge'
                                 GROUP BY account_id, effective_date HAVING count(*) > 1) x),
          (SELECT count(*) FROM billing_wallet w
           WHERE w.balance <> -coalesce((SELECT sum(c.total - c.credit)
                                         FROM billing_dailycharge c
                                         WHERE c.account_id = w.account_id), 0)
              OR w.balance <> -coalesce((SELECT sum(p.amount) FROM billing_posting p
                                         WHERE p.ledger_account_id = w.ledger_account_id), 0))
        """,
        {"days": days},
    )
    return [
        Check(
            f"accounts charged for {', '.join(f'{day:%m-%d}' for day in days)}",
            ", ".join(f"{accounts:,}" for _ in days),
            ", ".join(f"{_charged_on(day):,}" for day in days),
        ),
        Check("uncharged account-days", 0, uncharged),
        Check("double charges (charge rows)", 0, doubles),
        Check("double charges (journal entries)", 0, entries_twice),
        Check("wallets whose balance is not minus their charges", 0, wallets_off),
    ]


def _interrupted_day(kind: str) -> Callable[[World], list[Check]]:
    def run(world: World) -> list[Check]:
        from django.conf import settings

        from billing.services.charging import prepaid_charge_due
        from billing.tasks.charging import prepaid_charge_task
        from portal.audit.actors import SystemActor

        accounts, chunk = _accounts(world)
        # The worker charges yesterday by the real clock: that day is the one interrupted.
        today = dt.datetime.now(zoneinfo.ZoneInfo(TZ)).date()
        day = today - dt.timedelta(days=1)
        days = [day - dt.timedelta(days=1), day, today]
        rows, first_day = _charging_world(accounts=accounts, first=days[0], days=len(days))
        worker = world.worker(
            queues="billing",
            # Yesterday is due whatever the hour here; chunks as in production at full scale.
            env={"PREPAID_CHARGE_HOUR": "0", "PREPAID_CHARGE_CHUNK": str(chunk)},
        )
        prepaid_charge_task.delay()
        fault = worker.kill if kind == "worker" else world.crash_database
        when = _stop_mid_run(day=day, accounts=accounts, fault=fault)
        if dt.datetime.now(zoneinfo.ZoneInfo(TZ)).date() != today:
            raise RuntimeError(f"{TZ} passed midnight while the worker charged; run it again")
        if kind == "database":
            world.restart_database()
        # The next morning, after the local midnight, when beat runs the charge again.
        as_of = local_midnight(today + dt.timedelta(days=1), TZ) + dt.timedelta(
            hours=settings.PREPAID_CHARGE_HOUR, minutes=35
        )
        began = time.monotonic()
        prepaid_charge_due(as_of=as_of, actor=SystemActor("verify:next-day"))
        say(
            f"{accounts:,} accounts and {24 * len(days)} hours of rollups each set up in "
            f"{rows:.0f} s, charged for {days[0]} in {first_day:.0f} s; "
            f"{when:,} charged for {day} when the fault landed; the next day's run "
            f"(catch-up of {settings.PREPAID_CHARGE_CATCH_UP_DAYS} days) took "
            f"{time.monotonic() - began:.0f} s"
        )
        what = "the worker was killed" if kind == "worker" else "PostgreSQL crashed"
        checks: list[Check] = [
            Between(
                f"accounts charged for {day:%m-%d} when {what}",
                f"some of {accounts:,}",
                when,
                low=0,
                high=accounts,
            ),
            *_charge_checks(days=days, accounts=accounts),
        ]
        if kind == "database":
            checks.append(Check("worker still serving", True, worker.alive))
        return checks

    return run


scenario(
    "charging: worker killed mid-day, next day's run after midnight",
    group="money",
    fault="SIGKILL of the worker during the daily charge",
    fast=True,
)(_interrupted_day("worker"))
scenario(
    "charging: PostgreSQL crashed mid-day, next day's run after midnight",
    group="money",
    fault="SIGKILL of the postmaster during the daily charge",
)(_interrupted_day("database"))
