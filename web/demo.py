"""Demo data for `make run`: a corporate group, residents, a staff admin and their logins, and a
year of 15-minute readings for every demo account.

Everything is created through the services (so the audit log tells the same story) and looked
up by natural keys first, so that seeding twice changes nothing. The readings come from the
fleet simulator (meters.simulator) and go through the real import pipeline; a second run finds
them up to date and imports nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
import time
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from meters.models import Register, ServicePoint, Supply
from meters.selectors.fleet import supplies_of_account
from meters.selectors.readings import register_recent_readings
from meters.services import supply as supply_services
from meters.simulator import (
    Anomaly,
    Fleet,
    Installation,
    Load,
    MeterSpec,
    RegisterSpec,
    Unit,
    anomaly_at,
    simulate,
)
from meters.simulator.load import files_import, fleet_apply
from portal.audit.actors import Actor
from portal.lib.periods import local_midnight
from portal.tenancy.models import Account, Membership, Organisation
from portal.tenancy.roles import Role
from portal.tenancy.services.accounts import account_create
from portal.tenancy.services.members import membership_create
from portal.tenancy.services.organisations import organisation_create
from portal.users.models import User
from portal.users.services import user_create
from web.demo_billing import DemoBilling, demo_billing_load

logger = logging.getLogger("web.demo")  # seed_demo prints it as progress

DEMO_PASSWORD = "demo-portal-2026"  # noqa: S105 - printed for the demo; never used elsewhere

GROUP = "Harbour Holdings"
SUBSIDIARIES: dict[str, list[tuple[str, str, str]]] = {
    # subsidiary: [(account number, name, payment mode)]
    "Harbour Residential": [
        ("HR-0101", "Harbour View Tower, flat 1A", "prepaid"),
        ("HR-0102", "Harbour View Tower, flat 1B", "prepaid"),
        ("HR-0201", "Harbour View Tower, flat 2A", "prepaid"),
        ("HR-0202", "Harbour View Tower, flat 2B", "postpaid"),
    ],
    "Harbour Commercial": [
        ("HC-1001", "Pier 3 Warehouse", "postpaid"),
        ("HC-1002", "Harbour Food Court", "postpaid"),
        ("HC-1003", "Marina Office Block", "postpaid"),
    ],
}
HOUSEHOLDS: list[tuple[str, str, str]] = [
    ("RH-0001", "Chen household", "prepaid"),
    ("RH-0002", "Wong household", "postpaid"),
    ("RH-0003", "Smith household", "prepaid"),
    ("RH-0004", "de Vries household", "prepaid"),
]
CURRENCY = "TWD"
TIME_ZONE = "Asia/Taipei"
# Accounts outside Taipei: (time zone, currency). The de Vries household in Amsterdam lives
# through the clocks changing (23- and 25-hour days) and pays in euros.
ABROAD: dict[str, tuple[str, str]] = {"RH-0004": ("Europe/Amsterdam", "EUR")}
# Moves: the account that moves in -> (the account that moved out, days before today, local
# hour of the move). Flat 3A changed hands mid-afternoon: the leaving tenant pays that day's
# standing charge and the morning's use, the new one the rest.
MOVES: dict[str, tuple[str, int, int]] = {"HR-0302": ("HR-0301", 20, 14)}
SUBSIDIARIES["Harbour Residential"] += [
    ("HR-0301", "Harbour View Tower, flat 3A (moved out)", "prepaid"),
    ("HR-0302", "Harbour View Tower, flat 3A", "postpaid"),
]
DEMO_SEED = 2026
DEMO_DAYS = 365  # of 15-minute readings, up to now
DEMO_WINDOW_DAYS = 183  # half-yearly files: the pipeline is fastest with big batches
DEMO_IMPORT_WORKERS = 2  # two halves of the fleet imported side by side

# (email, name, where, role); "where" is an organisation name or an account number.
PEOPLE: list[tuple[str, str, str, Role]] = [
    ("owner@harbour.example.com", "Grace Harbour", GROUP, Role.OWNER),
    ("group.manager@harbour.example.com", "Henry Lau", GROUP, Role.MANAGER),
    ("residential.manager@harbour.example.com", "Ivy Tsai", "Harbour Residential", Role.MANAGER),
    ("commercial.manager@harbour.example.com", "Jack Ho", "Harbour Commercial", Role.MANAGER),
    ("viewer@harbour.example.com", "Kim Yeh", "Harbour Commercial", Role.VIEWER),
    ("accounts@pier3.example.com", "Leo Wu", "HC-1001", Role.PAYER),
    ("chen@example.com", "Mei Chen", "RH-0001", Role.OWNER),
    ("lin@example.com", "Wei Lin", "RH-0001", Role.PAYER),
    ("chen.junior@example.com", "Amy Chen", "RH-0001", Role.VIEWER),
    ("wong@example.com", "Tony Wong", "RH-0002", Role.OWNER),
    ("smith@example.com", "Sarah Smith", "RH-0003", Role.OWNER),
    ("smith.partner@example.com", "Sam Smith", "RH-0003", Role.MANAGER),
    ("devries@example.com", "Anna de Vries", "RH-0004", Role.OWNER),
    ("flat3a@example.com", "Ben Okafor", "HR-0302", Role.OWNER),
]
STAFF_ADMIN = ("admin@example.com", "Portal Administrator")


@dataclass
class DemoReadings:
    """What loading the demo readings did (nothing, when they were up to date)."""

    meters: int = 0
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    files: int = 0
    rows: int = 0
    inserted: int = 0
    duplicate: int = 0
    failed: int = 0
    generate_seconds: float = 0.0
    import_seconds: float = 0.0
    up_to_date: bool = False


@dataclass
class DemoResult:
    created: int = 0
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # (email, password, what)
    billing: DemoBilling | None = None
    readings: DemoReadings | None = None


def _user(email: str, name: str, *, actor: Actor, result: DemoResult, staff: bool = False) -> User:
    user = User.objects.filter(email=email).first()
    if user is None:
        user = user_create(
            email=email,
            name=name,
            password=DEMO_PASSWORD,
            is_staff=staff,
            is_superuser=staff,
            email_verified=True,
            actor=actor,
        )
        result.created += 1
    return user


def _organisation(
    name: str, parent: Organisation | None, *, actor: Actor, result: DemoResult
) -> Organisation:
    organisation = Organisation.objects.filter(name=name, parent=parent).first()
    if organisation is None:
        organisation = organisation_create(
            name=name, parent=parent, time_zone=TIME_ZONE, actor=actor
        )
        result.created += 1
    return organisation


def _account(
    number: str,
    name: str,
    mode: str,
    organisation: Organisation | None,
    *,
    actor: Actor,
    result: DemoResult,
) -> Account:
    account = Account.objects.filter(number=number).first()
    if account is None:
        time_zone, currency = ABROAD.get(number, (TIME_ZONE, CURRENCY))
        account = account_create(
            number=number,
            name=name,
            payment_mode=mode,
            currency=currency,
            time_zone=time_zone,
            organisation=organisation,
            actor=actor,
        )
        result.created += 1
    return account


def demo_seed(
    *,
    actor: Actor,
    as_of: dt.datetime | None = None,
    days: int = DEMO_DAYS,
    readings: bool = True,
) -> DemoResult:
    """Create whatever part of the demo is missing and return the logins to print.

    With `readings`, every demo account gets meters and `days` days of readings up to `as_of`
    (a year by default), imported through the pipeline outside the accounts' transaction.
    """
    logger.info("people: the group, its subsidiaries, the households and their logins")
    result = _demo_people(actor=actor)
    if readings:
        as_of = as_of or timezone.now()
        accounts = {a.number: a for a in Account.objects.filter(number__in=[*DEMO_METERS, *MOVES])}
        result.readings = demo_readings_load(
            accounts=accounts, actor=actor, as_of=as_of, days=days, result=result
        )
        result.billing = demo_billing_load(
            accounts=accounts,
            group=Organisation.objects.filter(name=GROUP, parent__isnull=True).first(),
            actor=actor,
            as_of=as_of,
            time_zone=TIME_ZONE,
        )
    return result


@transaction.atomic
def _demo_people(*, actor: Actor) -> DemoResult:
    result = DemoResult()
    group = _organisation(GROUP, None, actor=actor, result=result)
    organisations = {GROUP: group}
    accounts: dict[str, Account] = {}
    for subsidiary, rows in SUBSIDIARIES.items():
        organisations[subsidiary] = _organisation(subsidiary, group, actor=actor, result=result)
        for number, name, mode in rows:
            accounts[number] = _account(
                number, name, mode, organisations[subsidiary], actor=actor, result=result
            )
    for number, name, mode in HOUSEHOLDS:
        accounts[number] = _account(number, name, mode, None, actor=actor, result=result)

    admin_email, admin_name = STAFF_ADMIN
    _user(admin_email, admin_name, actor=actor, result=result, staff=True)
    result.logins.append((admin_email, DEMO_PASSWORD, "staff admin (/admin/)"))

    for email, name, where, role in PEOPLE:
        user = _user(email, name, actor=actor, result=result)
        organisation = organisations.get(where)
        account = accounts.get(where)
        held = Membership.objects.filter(user=user, organisation=organisation, account=account)
        if not held.exists():
            membership_create(
                user=user, role=role, actor=actor, organisation=organisation, account=account
            )
            result.created += 1
        result.logins.append((email, DEMO_PASSWORD, f"{role.label} of {where}"))
    return result


# --- Meters and readings -------------------------------------------------------------------

# account number -> meters: (kind, use, per day, per heating degree-day, per cooling degree-day,
# rooftop solar kWp). Per day in Wh or litres on a mild weekday; Taipei: cooling dominates.
DEMO_METERS: dict[str, list[tuple[str, str, float, float, float, float]]] = {
    "HR-0101": [("electricity", "home", 7_500, 100, 1_900, 0), ("water", "home", 260, 0, 12, 0)],
    "HR-0102": [("electricity", "home", 6_000, 80, 1_500, 0), ("water", "home", 180, 0, 8, 0)],
    "HR-0201": [("electricity", "home", 9_000, 120, 2_300, 0), ("water", "home", 320, 0, 15, 0)],
    "HR-0202": [("electricity", "home", 5_200, 70, 1_300, 0), ("water", "home", 150, 0, 6, 0)],
    "HC-1001": [("electricity", "warehouse", 380_000, 1_500, 14_000, 0)],
    "HC-1002": [
        ("electricity", "food", 260_000, 800, 11_000, 0),
        ("gas", "food", 38_000, 300, 0, 0),
    ],
    "HC-1003": [("electricity", "office", 520_000, 4_000, 36_000, 0)],
    "RH-0001": [
        ("electricity", "home", 10_500, 150, 2_600, 4.2),
        ("water", "home", 340, 0, 15, 0),
    ],
    "RH-0002": [("electricity", "home", 8_500, 120, 2_100, 0), ("water", "home", 290, 0, 12, 0)],
    "RH-0003": [("electricity", "home", 7_000, 100, 1_700, 0), ("water", "home", 230, 0, 10, 0)],
    "RH-0004": [("electricity", "home", 8_000, 260, 300, 0)],
    "HR-0301": [("electricity", "home", 6_500, 90, 1_600, 0), ("water", "home", 200, 0, 9, 0)],
}
MAX_RATE = {  # base units per hour: the meter's physical maximum
    "electricity/home": 15_000,
    "electricity/warehouse": 250_000,
    "electricity/food": 120_000,
    "electricity/office": 250_000,
    "water/home": 2_500,
    "gas/food": 25_000,
}


def _demo_meter(number: str, name: str, spec: tuple[str, str, float, float, float, float]) -> Unit:
    kind, use, daily, heating, cooling, solar = spec
    letter = kind[0].upper()
    electric = kind == "electricity"
    unit, display = ("Wh", "kWh") if electric else ("L", "m3")
    # A register that has counted for years: a few thousand kWh or m3, the same every time.
    initial = (sum(map(ord, number + kind)) * 7_919) % 40_000 * 1000 + 1_000_000
    registers = [
        RegisterSpec(
            code="import",
            unit=unit,
            display_unit=display,
            dials=6 if electric else 5,
            stuck_hours=24 if electric else 72,
            is_main=True,
            initial=initial if electric else initial // 20,
        )
    ]
    if solar:
        registers.append(
            RegisterSpec(
                code="export",
                direction="export",
                unit=unit,
                display_unit=display,
                dials=6,
                stuck_hours=32_767,  # no export on dull days is no fault
                initial=initial // 7,
                source="export",
            )
        )
    max_rate = MAX_RATE[f"{kind}/{use}"]
    meter = MeterSpec(
        serial=f"DEMO-{number}-{letter}",
        kind=kind,
        fmt="csv",
        load=Load(
            profile=f"{kind}/{use}",
            daily=daily,
            per_heating_dd=heating,
            per_cooling_dd=cooling,
            solar_kwp=solar,
            cap=max_rate // 4 * 8 // 10,  # a quarter of an hour, under the physical maximum
        ),
        max_rate=max_rate,
        registers=tuple(registers),
        service_point=f"SP-{number}-{letter}",
        communication="4g" if electric else "nbiot",
        address=name,
    )
    return Unit(key=meter.serial, fmt="csv", meters=(meter,), residential=use == "home")


def demo_fleets(accounts: dict[str, Account]) -> list[Fleet]:
    """The demo's meters, one fleet per time zone: electricity everywhere, water in the homes,
    gas at the food court, rooftop solar (an export register) at the Chens'."""
    by_zone: dict[str, list[Unit]] = {}
    for number, specs in DEMO_METERS.items():
        if number not in accounts:
            continue
        zone = ABROAD.get(number, (TIME_ZONE, CURRENCY))[0]
        address = accounts[number].name.removesuffix(" (moved out)")
        by_zone.setdefault(zone, []).extend(_demo_meter(number, address, spec) for spec in specs)
    return [
        Fleet(
            units=units,
            time_zone=zone,
            climate="subtropical" if zone == TIME_ZONE else "temperate",
        )
        for zone, units in sorted(by_zone.items(), key=lambda item: item[0] != TIME_ZONE)
    ]


def demo_supplies(
    accounts: dict[str, Account], *, start: dt.datetime, as_of: dt.datetime
) -> list[tuple[str, str, dt.datetime, dt.datetime | None]]:
    """Who is supplied where and when: (account number, service point code, start, end).

    Every meter's service point belongs to its account from `start`, except where a move
    hands it over (MOVES): the leaving account's supply ends at the move, the new one's
    starts there."""
    supplies: list[tuple[str, str, dt.datetime, dt.datetime | None]] = []
    moved = {old: (new, days, hour) for new, (old, days, hour) in MOVES.items()}
    for number, specs in DEMO_METERS.items():
        if number not in accounts:
            continue
        zone = zoneinfo.ZoneInfo(accounts[number].time_zone)
        # Each account moves in at its own local midnight of the demo's first day.
        first_day = start.astimezone(zoneinfo.ZoneInfo(TIME_ZONE)).date()
        begins = local_midnight(first_day, zone)
        for spec in specs:
            code = f"SP-{number}-{spec[0][0].upper()}"
            if number in moved and moved[number][0] in accounts:
                new, days, hour = moved[number]
                # Within the demo's period however short it is (tests seed a few days).
                days = min(days, (as_of - begins).days // 2)
                day = as_of.astimezone(zone).date() - dt.timedelta(days=days)
                moment = dt.datetime.combine(day, dt.time(hour), zone).astimezone(dt.UTC)
                if moment > begins:
                    supplies += [(number, code, begins, moment), (new, code, moment, None)]
                    continue
            supplies.append((number, code, begins, None))
    return supplies


def _demo_day(start: dt.datetime, days: int, fraction: float, hour: int) -> dt.datetime:
    """A local time `fraction` into the (at most a year long) period, inside a monthly file."""
    day = max(1, round(min(days, DEMO_DAYS) * fraction))
    if day % DEMO_WINDOW_DAYS in (0, DEMO_WINDOW_DAYS - 1):
        day += 2
    local = start.astimezone(zoneinfo.ZoneInfo(TIME_ZONE)) + dt.timedelta(days=day)
    return local.replace(hour=hour)


def demo_anomalies(fleet: Fleet, *, start: dt.datetime, days: int) -> list[Anomaly]:
    """A handful of realistic incidents over the year: what staff find in the admin."""
    units = {u.key: u for u in fleet.units}
    # (meter, kind, how far into the period, local hour, size)
    plan: list[tuple[str, str, float, int, dict[str, Any]]] = [
        # A burst pipe at night at the Wongs': a leak alarm and water running for six hours.
        ("DEMO-RH-0002-W", "leak", 0.55, 2, {"length": 24, "amount": 15}),
        # The flat 1A meter missed an hour of readings: estimated.
        ("DEMO-HR-0101-E", "gap_short", 0.35, 14, {"length": 4}),
        # The warehouse's modem was down for five hours: a gap, never zero-filled.
        ("DEMO-HC-1001-E", "gap_long", 0.7, 9, {"length": 20}),
        # Noise on the office block's pulse line: an impossible reading.
        ("DEMO-HC-1003-E", "spike", 0.45, 11, {"amount": 400_000}),
        # Someone opened the Smiths' meter cover.
        ("DEMO-RH-0003-E", "tamper", 0.8, 10, {"event": "tamper_cover"}),
    ]
    anomalies: list[Anomaly] = []
    for serial, kind, fraction, hour, params in plan:
        if serial not in units or days < 3:
            continue
        anomalies.append(
            anomaly_at(
                number=len(anomalies) + 1,
                kind=kind,
                unit=units[serial],
                when=_demo_day(start, days, fraction, hour),
                start=start,
                window_days=DEMO_WINDOW_DAYS,
                code="" if kind.startswith("gap") else "import",
                **params,
            )
        )
    return anomalies


def _service_points(fleets: list[Fleet]) -> dict[str, ServicePoint]:
    codes = [m.service_point for fleet in fleets for m in fleet.meters()]
    return {sp.code: sp for sp in ServicePoint.objects.filter(code__in=codes)}


def _last_reading(fleet: Fleet) -> dt.datetime | None:
    """The time up to which every demo register has readings (None if one has none)."""
    registers = Register.objects.filter(
        meter__serial__in=[m.serial for m in fleet.meters()]
    ).select_related("meter")
    last: list[dt.datetime] = []
    for register in registers:
        newest = register_recent_readings(register=register, limit=1)
        if not newest:
            return None
        last.append(newest[0].ts)
    return min(last) if last else None


def demo_readings_load(
    *,
    accounts: dict[str, Account],
    actor: Actor,
    as_of: dt.datetime,
    days: int,
    result: DemoResult,
) -> DemoReadings:
    """Give the demo accounts their meters and supplies, and readings up to `as_of`."""
    summary = DemoReadings()
    fleets = demo_fleets(accounts)
    summary.meters = sum(len(fleet.meters()) for fleet in fleets)
    tz = zoneinfo.ZoneInfo(TIME_ZONE)
    existing = list(
        Supply.objects.filter(account__in=list(accounts.values()))
        .exclude(account__number__in=[*ABROAD, *MOVES])
        .values_list("start", flat=True)
    )
    if existing:
        start = min(existing)
    else:
        first_day = as_of.astimezone(tz).date() - dt.timedelta(days=days)
        start = local_midnight(first_day, tz)
    installed_at = start - dt.timedelta(days=1)
    logger.info("meters: %d meters and their supplies", summary.meters)
    for fleet in fleets:
        fleet.installations = [
            Installation(m.serial, m.service_point, installed_at) for m in fleet.meters()
        ]
        result.created += fleet_apply(fleet=fleet.as_json(), actor=actor)
    points = _service_points(fleets)
    for number, code, begins, ends in demo_supplies(accounts, start=start, as_of=as_of):
        account = accounts[number]
        if not supplies_of_account(account_id=account.pk, service_point_id=points[code].pk):
            supply_services.supply_start(
                account=account, service_point=points[code], start=begins, end=ends, actor=actor
            )
            result.created += 1
    summary.start, summary.end = start, as_of
    summary.up_to_date = True
    for fleet in fleets:
        _fleet_readings(fleet, start=start, as_of=as_of, actor=actor, summary=summary)
    return summary


def _fleet_readings(
    fleet: Fleet, *, start: dt.datetime, as_of: dt.datetime, actor: Actor, summary: DemoReadings
) -> None:
    """Simulate and import one fleet's readings from `start` (or its last reading) to `as_of`."""
    last = _last_reading(fleet)
    if last is not None and last >= as_of - dt.timedelta(days=1):
        logger.info("readings of %s: already up to date", fleet.time_zone)
        return
    summary.up_to_date = False
    zone = zoneinfo.ZoneInfo(fleet.time_zone)
    first_day = start.astimezone(zoneinfo.ZoneInfo(TIME_ZONE)).date()
    fleet_start = local_midnight(first_day, zone)
    period = (as_of.astimezone(zone).date() - first_day).days + 1
    installed_at = start - dt.timedelta(days=1)
    began = time.monotonic()
    logger.info("generating readings: %d days of 15-minute intervals", period)
    with tempfile.TemporaryDirectory(prefix="demo-readings-") as folder:
        out = Path(folder)
        simulated = simulate(
            fleet=fleet,
            start=fleet_start,
            days=period,
            out_dir=out,
            seed=DEMO_SEED,
            window_days=DEMO_WINDOW_DAYS,
            anomalies=demo_anomalies(fleet, start=fleet_start, days=period)
            if fleet.time_zone == TIME_ZONE
            else [],
            shuffle=False,
            redeliver=False,
            resend_share=0.0,
            skip_before=last,
            until=as_of,
            installed_at=installed_at,
            units_per_file=-(-len(fleet.units) // DEMO_IMPORT_WORKERS),
        )
        summary.generate_seconds += time.monotonic() - began
        summary.files += simulated.files
        summary.rows += simulated.rows
        began = time.monotonic()
        logger.info("importing readings: %d files through the pipeline", simulated.files)
        imported = files_import(
            out_dir=out,
            entries=json.loads((out / "manifest.json").read_text())["files"],
            actor=actor,
            as_of=as_of,
            register_meters=False,  # the demo's fleet is complete
            workers=DEMO_IMPORT_WORKERS,
        )
        summary.import_seconds += time.monotonic() - began
        summary.inserted += imported.inserted
        summary.duplicate += imported.duplicate
        summary.failed += imported.failed
