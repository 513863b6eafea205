"""Small typed factory functions. They go through the services, so the audit log stays whole."""

from __future__ import annotations

import itertools

from portal.audit.actors import SystemActor
from portal.tenancy.models import Account, Membership, Organisation
from portal.tenancy.roles import Role
from portal.tenancy.services.accounts import account_create
from portal.tenancy.services.members import membership_create
from portal.tenancy.services.organisations import organisation_create
from portal.users.models import User
from portal.users.services import user_create

SYSTEM = SystemActor("test:factory")
PASSWORD = "correct-horse-battery-9"
_counter = itertools.count(1)


def make_user(email: str | None = None, *, password: str = PASSWORD, staff: bool = False) -> User:
    """Create a user with a verified email address and a known password."""
    email = email or f"user{next(_counter)}@example.com"
    return user_create(
        email=email,
        password=password,
        is_staff=staff,
        is_superuser=staff,
        email_verified=True,
        actor=SYSTEM,
    )


def make_organisation(
    name: str | None = None, *, parent: Organisation | None = None
) -> Organisation:
    return organisation_create(name=name or f"Org {next(_counter)}", parent=parent, actor=SYSTEM)


def make_account(
    name: str | None = None,
    *,
    organisation: Organisation | None = None,
    payment_mode: str = "prepaid",
) -> Account:
    return account_create(
        name=name or f"Account {next(_counter)}",
        payment_mode=payment_mode,
        currency="TWD",
        time_zone="Asia/Taipei",
        organisation=organisation,
        actor=SYSTEM,
    )


def make_membership(
    user: User,
    role: Role,
    *,
    account: Account | None = None,
    organisation: Organisation | None = None,
) -> Membership:
    return membership_create(
        user=user, role=role, account=account, organisation=organisation, actor=SYSTEM
    )
