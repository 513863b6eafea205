"""Demo data for `make run`: a corporate group, residents, a staff admin and their logins.

Everything is created through the services (so the audit log tells the same story) and looked
up by natural keys first, so that seeding twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction

from portal.audit.actors import Actor
from portal.tenancy.models import Account, Membership, Organisation
from portal.tenancy.roles import Role
from portal.tenancy.services import account_create, membership_create, organisation_create
from portal.users.models import User
from portal.users.services import user_create

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
]
CURRENCY = "TWD"
TIME_ZONE = "Asia/Taipei"

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
]
STAFF_ADMIN = ("admin@example.com", "Portal Administrator")


@dataclass
class DemoResult:
    created: int = 0
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # (email, password, what)


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
        organisation = organisation_create(name=name, parent=parent, actor=actor)
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
        account = account_create(
            number=number,
            name=name,
            payment_mode=mode,
            currency=CURRENCY,
            time_zone=TIME_ZONE,
            organisation=organisation,
            actor=actor,
        )
        result.created += 1
    return account


@transaction.atomic
def demo_seed(*, actor: Actor) -> DemoResult:
    """Create whatever part of the demo is missing and return the logins to print."""
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
