#!/usr/bin/env python3
"""`make bench`, web part: the consumption API and the account dashboard under gunicorn, against
a trivial JSON view and a one-query view measured in the same run (docs/QUALITY.md, web row).

Steps, on a database of its own (`smartmeter_bench_web` on 127.0.0.1:5432, or
BENCH_WEB_DATABASE_URL; the name must contain `bench`; created, migrated and dropped again
unless --keep):

1. seed: a prepaid household in Asia/Taipei with electricity and water service points, a year of
   hourly and daily rollups for both (plus --filler-accounts other accounts with a year of
   rollups each, so that the tables and their indexes have a realistic size), a flat tariff,
   a wallet with top-ups and 60 days of daily charges (the product's charging service), a few
   open alerts; and its owner, a member who signs in with a password.
2. serve: `gunicorn portal.wsgi` on a free loopback port with portal.settings.bench: production
   settings (DEBUG off, persistent database connections, Redis cache and cached sessions,
   static files collected and served by whitenoise) on plain HTTP, plus two bench-only
   baseline views that no other settings module routes. Workers: --workers, --worker-class,
   --threads; 2 gthread workers x 2 threads by default (the best of those tried here, see
   parse_args).
3. sign in through the real login form, keep the session cookie.
4. load: `wrk` (Debian package; `scripts/system-deps.sh bench` installs it), --connections
   (16) over 2 threads, on each URL: a short warm-up, then --duration seconds (10) measured
   in --slices slices (5) that take turns with the other URLs' slices, so that a busy
   neighbour on the shared machine weighs on every URL alike. A Lua script counts every
   answer that is not 200: a run with any is reported and the script exits 1 (a benchmark of
   redirects or 403s measures nothing).

     trivial      GET /bench/trivial/                      no session: the anchor
     one-query    GET /bench/one-query/<number>/            no session: one indexed query
     (info)       the one-query view with the session, and GET /api/v1/accounts/<id>/: what
                  the session, the tenant resolution and DRF cost before any work is done
     consumption  GET /api/v1/accounts/<id>/consumption/?group_by=day, the last 30 days
     dashboard    GET /a/<id>/                              the full account home page

Goals (docs/QUALITY.md): consumption >= 0.5x the one-query view's requests/s, dashboard >= 0.25x,
p99 < 100 ms at 16 concurrent connections. A benchmark reports; it does not fail on a goal.
--profile then also measures, in this process without network or concurrency, the CPU time
of a request to every URL, each product URL's SQL queries, and a cProfile of where its CPU
time goes.

Redis database 1 holds the cache and sessions under the key prefix `bench-web`, removed at the
end.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import http.cookiejar
import io
import json
import os
import pstats
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(BASE_DIR / "scripts"))

from benchkit import (  # noqa: E402 - after the path is set
    database_conninfo,
    database_name,
    machine_lines,
    recreate_database,
    scratch_teardown,
    verdict,
)

from portal.lib.periods import local_midnight  # noqa: E402 - after the path is set

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smartmeter_bench_web"
REDIS_URL = "redis://127.0.0.1:6379/1"
CACHE_PREFIX = "bench-web"
TZ = "Asia/Taipei"
EMAIL = "resident@bench.example.com"
PASSWORD = secrets.token_urlsafe(16)
CHARGE_DAYS = 60
# docs/QUALITY.md, web row.
GOAL_CONSUMPTION = 0.5
GOAL_DASHBOARD = 0.25
GOAL_P99_MS = 100.0

LUA = """
-- Written by scripts/bench_web.py: count answers other than 200, report percentiles as JSON.
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    not_ok = 0
    first_bad = 0
end

function response(status, headers, body)
    if status ~= 200 then
        not_ok = not_ok + 1
        if first_bad == 0 then first_bad = status end
    end
end

function done(summary, latency, requests)
    local bad, example = 0, 0
    for _, thread in ipairs(threads) do
        bad = bad + thread:get("not_ok")
        if example == 0 then example = thread:get("first_bad") end
    end
    local e = summary.errors
    io.write(string.format(
        'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "not_ok": %d, ' ..
        '"first_bad_status": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d, ' ..
        '"p50": %d, "p95": %d, "p99": %d, "max": %d}\\n',
        summary.requests, summary.duration, summary.bytes, bad, example, e.connect, e.read,
        e.write, e.timeout, latency:percentile(50), latency:percentile(95),
        latency:percentile(99), latency.max))
end
"""


def log(message: str) -> None:
    print(f"[bench-web] {message}", flush=True)


class BenchError(Exception):
    """Something the figures cannot stand on: exit 1."""


# --- Environment ------------------------------------------------------------------------------


def bench_environment(database_url: str, workdir: Path) -> dict[str, str]:
    """What this process, manage.py and gunicorn run with."""
    return {
        "DJANGO_SETTINGS_MODULE": "portal.settings.bench",
        "DJANGO_SECRET_KEY": "bench-only-" + secrets.token_urlsafe(48),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "DATABASE_URL": database_url,
        "DATABASE_CONN_MAX_AGE": "600",
        "REDIS_URL": REDIS_URL,
        "CACHE_REDIS_URL": REDIS_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "CACHE_KEY_PREFIX": CACHE_PREFIX,
        "PORTAL_STATIC_ROOT": str(workdir / "static"),
        "PORTAL_MEDIA_ROOT": str(workdir / "media"),
        "LOG_LEVEL": "WARNING",
        # Production keeps staff MFA on; the bench's member is no staff, so it plays no part.
        "PAYMENT_SANDBOX_SECRET": "bench-only-" + secrets.token_urlsafe(32),
        "PAYMENT_SANDBOX_ENABLED": "1",
    }


def clear_cache_keys() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{CACHE_PREFIX}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
    finally:
        client.close()


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        subprocess.run([str(BASE_DIR / "scripts" / "system-deps.sh"), "bench"], check=False)
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is missing: run `scripts/system-deps.sh bench` as root")
    return found


# --- Seed ---------------------------------------------------------------------------------------

# A household's hour of electricity in Wh and of water in litres, by local hour, with a bounded
# wobble from the hour's index: evening and morning peaks, quiet nights.
# Hourly rollups are day rows of arrays (meters migration 0014): one row per hour goes into
# seed_hours, which meters_hourly_load() merges, each day row written once.
SEED_HOURS = """
CREATE TEMP TABLE seed_hours (service_point_id bigint, direction varchar(8), hour timestamptz,
                              account_id bigint, consumption bigint, estimated bigint,
                              suspect_count integer, reading_count integer)
"""

HOURLY_SQL = """
INSERT INTO seed_hours (service_point_id, direction, hour, account_id, consumption,
                        estimated, suspect_count, reading_count)
SELECT sp.id, 'import', h.hour, a.id,
       CASE WHEN sp.kind = 'water'
            THEN (CASE WHEN h.lh BETWEEN 6 AND 8 OR h.lh BETWEEN 19 AND 22 THEN 35 ELSE 2 END)
                 + mod(h.i * 7 + a.id * 13, 20)
            ELSE 180 + (CASE WHEN h.lh BETWEEN 18 AND 22 THEN 520
                             WHEN h.lh BETWEEN 7 AND 9 THEN 240 ELSE 0 END)
                 + mod(h.i * 31 + a.id * 17, 90)
       END,
       0, 0, 4
FROM tenancy_account a
JOIN meters_supply s ON s.account_id = a.id
JOIN meters_servicepoint sp ON sp.id = s.service_point_id
CROSS JOIN LATERAL (
    SELECT t AS hour, extract(hour FROM t AT TIME ZONE %(tz)s)::int AS lh,
           extract(epoch FROM t)::bigint / 3600 AS i
    FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour',
                         interval '1 hour') t
) h
WHERE a.id = ANY(%(accounts)s)
-- In time order, as imports write them: every account's rows spread over the whole table.
ORDER BY h.hour, a.id, sp.id
"""

DAILY_SQL = """
INSERT INTO meters_rollupdaily (service_point_id, direction, day, account_id, consumption,
                                estimated, suspect_count, reading_count, hours)
SELECT service_point_id, direction, (hour AT TIME ZONE %(tz)s)::date, account_id,
       sum(consumption), sum(estimated), sum(suspect_count), sum(reading_count), count(*)
FROM meters_hourly('-infinity', 'infinity')
WHERE account_id = ANY(%(accounts)s)
GROUP BY 1, 2, 3, 4
ORDER BY 3, 4, 1
"""


@dataclass(frozen=True)
class Seeded:
    account_public_id: str
    account_number: str
    account_name: str
    hourly_rows: int
    daily_rows: int
    charges: int
    seconds: float


def seed(*, filler_accounts: int, as_of: dt.datetime) -> Seeded:
    """Build the bench's account (see the module docstring) in this process's database."""
    from django.db import connection

    from portal.audit.actors import SystemActor

    started = time.perf_counter()
    actor = SystemActor("bench:web")
    zone = zoneinfo.ZoneInfo(TZ)
    today = as_of.astimezone(zone).date()
    first_day = today - dt.timedelta(days=365)
    move_in = local_midnight(first_day, zone).astimezone(zone)
    # Data up to the last whole hour: today is under way, as it always is.
    end = as_of.replace(minute=0, second=0, microsecond=0)
    account, fillers, points, meters = _seed_fleet(filler_accounts, move_in, end, actor)
    ids = [account.pk, *(f.pk for f in fillers)]
    with connection.cursor() as cursor:
        cursor.execute(SEED_HOURS)
        cursor.execute(HOURLY_SQL, {"tz": TZ, "start": move_in, "end": end, "accounts": ids})
        hourly_rows = cursor.rowcount
        # A few estimated hours, as gaps filled by interpolation leave them.
        cursor.execute(
            "UPDATE seed_hours SET estimated = consumption "
            "WHERE account_id = %s AND mod(extract(epoch FROM hour)::bigint / 3600, 211) = 0",
            [account.pk],
        )
        cursor.execute("SELECT meters_hourly_load('seed_hours')")
        cursor.execute("DROP TABLE seed_hours")
        cursor.execute(DAILY_SQL, {"tz": TZ, "accounts": ids})
        daily_rows = cursor.rowcount
    charges = _seed_wallet(account, points["electricity"], first_day, today, actor)
    _seed_alerts(account, points, meters, end)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return Seeded(
        account_public_id=str(account.public_id),
        account_number=account.number,
        account_name=account.name,
        hourly_rows=hourly_rows,
        daily_rows=daily_rows,
        charges=charges,
        seconds=time.perf_counter() - started,
    )


def _seed_fleet(
    filler_accounts: int, move_in: dt.datetime, end: dt.datetime, actor: Any
) -> tuple[Any, list[Any], dict[str, Any], dict[str, Any]]:
    """The member, the accounts, and a supplied electricity and water meter for each."""
    from django.db import transaction

    from meters.models import Meter, MeterInstallation, Register, ServicePoint
    from meters.services.supply import supply_start
    from portal.tenancy.roles import Role
    from portal.tenancy.services.accounts import account_create
    from portal.tenancy.services.members import membership_create
    from portal.users.services import user_create

    with transaction.atomic():
        user = user_create(
            email=EMAIL,
            password=PASSWORD,
            is_staff=False,
            is_superuser=False,
            email_verified=True,
            actor=actor,
        )
        account = account_create(
            name="Bench household",
            payment_mode="prepaid",
            currency="TWD",
            time_zone=TZ,
            organisation=None,
            actor=actor,
        )
        membership_create(user=user, role=Role.OWNER, account=account, actor=actor)
        fillers = [
            account_create(
                name=f"Filler {n}",
                payment_mode="postpaid",
                currency="TWD",
                time_zone=TZ,
                organisation=None,
                actor=actor,
            )
            for n in range(filler_accounts)
        ]
        points: dict[str, Any] = {}
        meters: dict[str, Any] = {}
        for kind, unit in (("electricity", "Wh"), ("water", "L")):
            for holder in [account, *fillers]:
                tag = f"{holder.number}-{kind[0].upper()}"
                sp = ServicePoint.objects.create(code=f"BW-{tag}", kind=kind, time_zone=TZ)
                meter = Meter.objects.create(
                    serial=f"BWM-{tag}",
                    kind=kind,
                    max_rate=50_000,
                    battery_percent=80,
                    last_contact_at=end,
                )
                MeterInstallation.objects.create(
                    meter=meter, service_point=sp, installed_at=move_in - dt.timedelta(days=30)
                )
                Register.objects.create(
                    meter=meter, code="import", unit=unit, is_main=True, interval_seconds=900
                )
                supply_start(account=holder, service_point=sp, start=move_in, actor=actor)
                if holder == account:
                    points[kind], meters[kind] = sp, meter
    return account, fillers, points, meters


def _seed_wallet(account: Any, point: Any, first_day: dt.date, today: dt.date, actor: Any) -> int:
    """A flat tariff, a wallet, three top-ups and CHARGE_DAYS days of charges, each made by the
    product's services as the hourly beat would have; return the charges made."""
    from django.db import transaction

    from billing.models import Tariff, TariffVersion
    from billing.services.charging import prepaid_charge_day
    from billing.services.ledger import wallet_create
    from billing.services.tariffs import tariff_assign, tariff_save, tariff_version_save
    from billing.services.topups import topup_create, topup_settle_paid

    zone = zoneinfo.ZoneInfo(TZ)
    with transaction.atomic():
        tariff = tariff_save(
            instance=Tariff(
                code="bench-home",
                name="Bench home",
                kind="electricity",
                currency="TWD",
                quantity_unit="kWh",
            ),
            actor=actor,
        )
        tariff_version_save(
            instance=TariffVersion(
                tariff=tariff,
                valid_from=first_day,
                standing_charge=Decimal("3.5"),
                tax_rate=Decimal("0.05"),
                structure={"type": "flat", "rate": "2.8"},
            ),
            actor=actor,
        )
        tariff_assign(
            account=account, service_point=point, tariff=tariff, valid_from=first_day, actor=actor
        )
        wallet_create(account=account, actor=actor, emergency_credit=300_00)
    charges = 0
    for back in range(CHARGE_DAYS, 0, -1):
        day = today - dt.timedelta(days=back)
        morning = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(7), zone)
        if back in (CHARGE_DAYS, 30, 5):
            topup, _new = topup_create(
                account=account,
                amount=1500_00,
                idempotency_key=f"bench-web-{back}",
                actor=actor,
                as_of=morning,
            )
            topup_settle_paid(
                topup_id=topup.pk,
                provider_ref=f"bench-{topup.public_id}",
                amount=topup.amount,
                currency=topup.currency,
                actor=actor,
                as_of=morning + dt.timedelta(minutes=2),
            )
        charges += prepaid_charge_day(day=day, time_zone=TZ, actor=actor, as_of=morning).charged
    return charges


def _seed_alerts(
    account: Any, points: dict[str, Any], meters: dict[str, Any], end: dt.datetime
) -> None:
    """Three open alerts and an acknowledged one."""
    from meters.models import MeterEvent

    for kind_of_meter, kind, severity, days_ago in (
        ("water", MeterEvent.Kind.NIGHT_FLOW, MeterEvent.Severity.WARNING, 2),
        ("water", MeterEvent.Kind.BATTERY_LOW, MeterEvent.Severity.INFO, 9),
        ("electricity", MeterEvent.Kind.TAMPER_COVER, MeterEvent.Severity.SERIOUS, 20),
        ("electricity", MeterEvent.Kind.POWER_OUTAGE, MeterEvent.Severity.INFO, 40),
    ):
        MeterEvent.objects.create(
            meter=meters[kind_of_meter],
            service_point=points[kind_of_meter],
            account=account,
            kind=kind,
            severity=severity,
            occurred_at=end - dt.timedelta(days=days_ago),
            acknowledged_at=end if days_ago == 40 else None,
            notified_at=end - dt.timedelta(days=days_ago),
        )


# --- Server -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """gunicorn in its own process group, stopped with it."""

    def __init__(self, env: dict[str, str], args: argparse.Namespace, logfile: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        command = [
            str(BASE_DIR / ".venv" / "bin" / "gunicorn"),
            "portal.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(args.workers),
            "--worker-class",
            args.worker_class,
            "--backlog",
            "256",
            "--error-logfile",
            str(logfile),
            "--log-level",
            "warning",
        ]
        if args.worker_class == "gthread":
            command += ["--threads", str(args.threads)]
        self.logfile = logfile
        self.process = subprocess.Popen(
            command, cwd=BASE_DIR, env={**os.environ, **env}, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"gunicorn exited: {self.tail()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as answer,  # noqa: S310
            ):
                if answer.status == 200:
                    return
            time.sleep(0.2)
        raise BenchError(f"gunicorn did not answer within 60 s: {self.tail()}")

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.logfile.read_text(encoding="utf-8").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


def sign_in(base: str) -> str:
    """Sign in through the login form as a browser would; return the Cookie header."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{base}/accounts/login/", timeout=10) as answer:
        page = answer.read().decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if match is None:
        raise BenchError("no CSRF token on the login page")
    form = urllib.parse.urlencode(
        {"login": EMAIL, "password": PASSWORD, "csrfmiddlewaretoken": match.group(1)}
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{base}/accounts/login/", data=form, headers={"Referer": f"{base}/accounts/login/"}
    )
    with opener.open(request, timeout=30) as answer:
        answer.read()
    cookies = {cookie.name: cookie.value for cookie in jar}
    if "sessionid" not in cookies:
        raise BenchError("signing in gave no session cookie")
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def fetch(url: str, cookie: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})  # noqa: S310
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(request, timeout=30) as answer:
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# --- Load -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    path: str
    session: bool
    check: str  # a text the 200 answer must contain
    goal: float | None = None  # of the one-query view's requests/s; None: for information


@dataclass(frozen=True)
class Measure:
    requests: int
    seconds: float
    not_ok: int
    first_bad_status: int
    socket_errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(
    wrk: str, url: str, *, cookie: str | None, seconds: float, connections: int, script: Path
) -> Measure:
    command = [
        wrk,
        "--threads",
        "2",
        "--connections",
        str(connections),
        "--duration",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--script",
        str(script),
    ]
    if cookie:
        command += ["--header", f"Cookie: {cookie}"]
    done = subprocess.run(
        [*command, url], capture_output=True, text=True, check=False, timeout=seconds + 60
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()} {done.stdout}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    return Measure(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        not_ok=data["not_ok"],
        first_bad_status=data["first_bad_status"],
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        p50_ms=data["p50"] / 1000,
        p95_ms=data["p95"] / 1000,
        p99_ms=data["p99"] / 1000,
        max_ms=data["max"] / 1000,
    )


def combine(parts: list[Measure]) -> Measure:
    """One URL's slices together: requests over the total time, each latency percentile the
    median of the slices' (wrk reports percentiles per run, not its histogram)."""

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[len(ordered) // 2]

    return Measure(
        requests=sum(m.requests for m in parts),
        seconds=sum(m.seconds for m in parts),
        not_ok=sum(m.not_ok for m in parts),
        first_bad_status=0,
        socket_errors=sum(m.socket_errors for m in parts),
        p50_ms=median([m.p50_ms for m in parts]),
        p95_ms=median([m.p95_ms for m in parts]),
        p99_ms=median([m.p99_ms for m in parts]),
        max_ms=max(m.max_ms for m in parts),
    )


# --- Profile --------------------------------------------------------------------------------------


def profile_requests(targets: list[Target], email: str, repeat: int = 200) -> list[str]:
    """In this process, through Django's test client (same settings and middleware, no
    network, no concurrency): the CPU time of a request to every URL, then each product URL's
    queries and a cProfile (CPU time) of `repeat` requests to it."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from portal.users.models import User

    member = Client()
    member.force_login(User.objects.get(email=email))
    anonymous = Client()
    lines = [f"CPU time per request in this process (best of 3 x {repeat} requests):"]
    for target in targets:
        client = member if target.session else anonymous
        for _ in range(20):  # warm: templates, translations, connections
            client.get(target.path)
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            for _ in range(repeat):
                client.get(target.path)
            best = min(best, (time.process_time() - started) / repeat)
        lines.append(f"  {best * 1000:6.2f} ms  {target.name.strip()}")
    for target in targets:
        if target.goal is None:
            continue
        with CaptureQueriesContext(connection) as queries:
            answer = member.get(target.path)
        sql_ms = sum(float(q["time"]) for q in queries.captured_queries) * 1000
        lines.append(
            f"{target.name}: HTTP {answer.status_code}, {len(answer.content):,} bytes, "
            f"{len(queries.captured_queries)} queries ({sql_ms:.1f} ms as Django times them)"
        )
        for query in queries.captured_queries:
            text = " ".join(query["sql"].split())
            lines.append(f"    {float(query['time']) * 1000:6.2f} ms  {text[:150]}")
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for _ in range(repeat):
            member.get(target.path)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(r"(portal|meters|billing)/(?!.*bench)", 25)
        lines.append(
            f"  cProfile (CPU) of {repeat} requests, project functions by cumulative time:"
        )
        lines.extend(
            "    " + row
            for row in out.getvalue().splitlines()
            if row.strip() and ("/" in row or "ncalls" in row)
        )
    return lines


# --- Report ---------------------------------------------------------------------------------------


def print_table(rows: list[tuple[str, ...]]) -> None:
    header = ("URL", "req/s", "p50 ms", "p95 ms", "p99 ms", "ratio", "goal", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    aligns = ["<", ">", ">", ">", ">", ">", "<", "<"]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(
            f"{cell:{a}{w}}" for cell, a, w in zip(row, aligns, widths, strict=True)
        ).rstrip()

    print(fmt(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(fmt(row))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per URL")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per URL")
    parser.add_argument(
        "--slices", type=int, default=5, help="slices each URL's duration is measured in"
    )
    parser.add_argument("--connections", type=int, default=16)
    # gthread workers by default: they keep connections alive, while a sync worker closes every
    # connection, so each request pays a new one (compare with --worker-class sync).
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--worker-class", choices=("sync", "gthread"), default="gthread", help="gunicorn's"
    )
    parser.add_argument("--threads", type=int, default=2, help="threads per gthread worker")
    parser.add_argument(
        "--filler-accounts", type=int, default=50, help="other accounts with a year of rollups"
    )
    parser.add_argument("--quick", action="store_true", help="3 s per URL, 1 s warm-up, 1 round")
    parser.add_argument(
        "--profile", action="store_true", help="also profile one request of each product URL"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and files")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.slices = 3.0, 1.0, 3
        args.filler_accounts = min(args.filler_accounts, 20)
    return args


def main() -> int:  # noqa: PLR0912, PLR0915 - one linear script, step by step
    args = parse_args()
    wrk = ensure_wrk()
    database_url = os.environ.get("BENCH_WEB_DATABASE_URL", DEFAULT_DATABASE_URL)
    database_name(database_url)
    workdir = Path(tempfile.mkdtemp(prefix="smartmeter-bench-web-"))
    env = bench_environment(database_url, workdir)
    os.environ.update(env)
    script = workdir / "report.lua"
    script.write_text(LUA, encoding="utf-8")
    server: Server | None = None
    failed = False
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    profile: list[str] = []
    recreate_database(database_url)
    info = machine_lines(database_conninfo(database_url))
    for line in info:
        log(line)
    try:
        log(f"database {database_name(database_url)}: migrating, collecting static files")
        for command in (["migrate", "-v", "0"], ["collectstatic", "--noinput", "-v", "0"]):
            subprocess.run(
                [sys.executable, "manage.py", *command], cwd=BASE_DIR, env=os.environ, check=True
            )
        import django

        django.setup()
        from django.utils import timezone

        clear_cache_keys()
        log(f"seeding: the bench household and {args.filler_accounts} filler accounts")
        seeded = seed(filler_accounts=args.filler_accounts, as_of=timezone.now())
        notes.append(
            f"data: {seeded.hourly_rows:,} hourly and {seeded.daily_rows:,} daily rollup rows "
            f"({1 + args.filler_accounts} accounts x 2 service points x a year), "
            f"{seeded.charges} daily charges, seeded in {seeded.seconds:.0f} s"
        )
        log(notes[-1])
        from django.db import connections

        connections.close_all()

        server = Server(env, args, workdir / "gunicorn.log")
        worker_text = f"{args.workers} {args.worker_class} workers" + (
            f" x {args.threads} threads" if args.worker_class == "gthread" else ""
        )
        log(f"gunicorn on {server.base}: {worker_text}")
        cookie = sign_in(server.base)
        zone = zoneinfo.ZoneInfo(TZ)
        today = timezone.now().astimezone(zone).date()
        query = urllib.parse.urlencode(
            {
                "group_by": "day",
                "period_from": (today - dt.timedelta(days=29)).isoformat(),
                "period_to": (today + dt.timedelta(days=1)).isoformat(),
            }
        )
        account = seeded.account_public_id
        one_query = f"/bench/one-query/{seeded.account_number}/"
        targets = [
            Target("trivial JSON view", "/bench/trivial/", False, '"ok"'),
            Target("one-query view", one_query, False, seeded.account_name),
            # Where the product URLs' time goes: the same view with a session (session and
            # user lookups), and the simplest account endpoint (tenant resolution and DRF).
            Target("  one-query view, signed in", one_query, True, seeded.account_name),
            Target("  account detail API", f"/api/v1/accounts/{account}/", True, account),
            Target(
                "consumption API (day, 30 days)",
                f"/api/v1/accounts/{account}/consumption/?{query}",
                True,
                '"group_by":"day"',
                GOAL_CONSUMPTION,
            ),
            Target(
                "account dashboard /a/<id>/",
                f"/a/{account}/",
                True,
                seeded.account_name,
                GOAL_DASHBOARD,
            ),
        ]
        for target in targets:
            status, body = fetch(server.base + target.path, cookie if target.session else None)
            if status != 200 or target.check.encode() not in body:
                raise BenchError(
                    f"{target.name}: HTTP {status} before the load, not the expected page"
                )
            if "/consumption/" in target.path:
                series = json.loads(body)["results"]
                points = sum(len(one["points"]) for one in series)
                notes.append(
                    f"consumption answer: {len(series)} series, {points} points, "
                    f"{len(body):,} bytes"
                )
                if points != 60:
                    raise BenchError(f"the consumption API answered {points} points, not 60")
            else:
                notes.append(f"{target.name.strip()}: {len(body):,} bytes")

        for target in targets:
            run_wrk(
                wrk,
                server.base + target.path,
                cookie=cookie if target.session else None,
                seconds=args.warmup,
                connections=args.connections,
                script=script,
            )
        # The machine is shared: slices of every URL take turns, so that each URL is measured
        # across the whole run and all of them under the same background load.
        slices: dict[str, list[Measure]] = {target.name: [] for target in targets}
        slice_seconds = max(1.0, args.duration / args.slices)
        for number in range(args.slices):
            for target in targets[number % len(targets) :] + targets[: number % len(targets)]:
                measure = run_wrk(
                    wrk,
                    server.base + target.path,
                    cookie=cookie if target.session else None,
                    seconds=slice_seconds,
                    connections=args.connections,
                    script=script,
                )
                if measure.not_ok or measure.socket_errors:
                    raise BenchError(
                        f"{target.name.strip()}: {measure.not_ok} answers were not 200 (first: "
                        f"{measure.first_bad_status}), {measure.socket_errors} socket errors"
                    )
                slices[target.name].append(measure)
        best = {name: combine(parts) for name, parts in slices.items()}
        for target in targets:
            parts = slices[target.name]
            log(
                f"{target.name.strip()}: {best[target.name].rate:,.0f} req/s (slices "
                f"{min(m.rate for m in parts):,.0f}-{max(m.rate for m in parts):,.0f}), "
                f"p99 {best[target.name].p99_ms:.1f} ms, "
                f"{sum(m.requests for m in parts):,} requests, all 200"
            )
        baseline = best[targets[1].name].rate
        for target in targets:
            m = best[target.name]
            ratio = m.rate / baseline
            if target.goal is None:
                goal, mark = ("baseline" if target is targets[1] else "(info)"), ""
            else:
                goal, mark = f">= {target.goal}x one-query", verdict(ratio, target.goal)
            rows.append(
                (
                    target.name,
                    f"{m.rate:,.0f}",
                    f"{m.p50_ms:.1f}",
                    f"{m.p95_ms:.1f}",
                    f"{m.p99_ms:.1f}",
                    f"{ratio:.2f}x",
                    goal,
                    mark,
                )
            )
        for target in targets:
            if target.goal is not None:
                p99 = best[target.name].p99_ms
                rows.append(
                    (
                        f"p99 of {target.name.split(' (')[0]}",
                        "",
                        "",
                        "",
                        f"{p99:.1f}",
                        "",
                        f"< {GOAL_P99_MS:.0f} ms at {args.connections} connections",
                        "PASS" if p99 < GOAL_P99_MS else "ABOVE",
                    )
                )
        notes.append(
            f"server: gunicorn {worker_text}, CONN_MAX_AGE "
            f"{env['DATABASE_CONN_MAX_AGE']} s, DEBUG off, whitenoise; load: wrk 2 threads x "
            f"{args.connections} connections, {args.warmup:g} s warm-up + {args.duration:g} s "
            f"per URL in {args.slices} slices taking turns (requests/s over all slices, "
            "latency the median slice's); baselines sent without a session, the "
            "product URLs with the signed-in member's"
        )
        if args.profile:
            profile = profile_requests(targets, EMAIL)
    except BenchError as error:
        failed = True
        print(f"\n[bench-web] FAILED: {error}", flush=True)
    finally:
        if server is not None:
            server.stop()
        scratch_teardown(
            database_url=database_url,
            workdir=workdir,
            keep=args.keep,
            tidy=clear_cache_keys,
            say=log,
        )

    print()
    print("Web benchmark (docs/QUALITY.md): requests/s and latency under wrk, ratios against the")
    print("one-query view measured in this run")
    for line in info:
        print(f"  {line}")
    print()
    if rows:
        print_table(rows)
    for note in notes:
        print(f"  {note}")
    if profile:
        print()
        print("Profile (--profile):")
        for line in profile:
            print(f"  {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
