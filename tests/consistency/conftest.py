"""The consistency suite's world: `make run`'s own demo, seeded once per module.

It is the demo a person meets (seed_demo's code, with its solar household, time-of-use
contract, tier change in the middle of last month, household in a zone with daylight saving
time, and a flat that changed hands), over DAYS days up to a fixed moment, so that "today" is
the same for every run. The seeding happens inside one transaction that is rolled back when
the module is done: the import pipeline imports file by file in the test's connection when it
runs in a transaction (meters.simulator.load.files_import), and each test adds its own
savepoint on top.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import time_machine
from django.db import transaction
from django.test import Client

from portal.tenancy.models import Account, Organisation
from portal.tenancy.roles import Role
from portal.users.models import User
from tests.factories import SYSTEM, make_membership, make_user
from web.demo import GROUP, demo_seed

# 10:00 in Taipei on a Friday; 03:00 in Amsterdam, after the October clock change.
AS_OF = dt.datetime(2026, 12, 4, 2, 0, tzinfo=dt.UTC)
DAYS = 100  # more than the 60 the issue asks: three whole months of bills fit


@dataclass
class Demo:
    as_of: dt.datetime
    accounts: list[Account]
    reader: User  # owner of every demo account and of the group (a role with every scope)
    group: Organisation

    def client(self, language: str = "en") -> Client:
        client = Client(HTTP_ACCEPT_LANGUAGE=language)
        client.force_login(self.reader)
        return client


@pytest.fixture(scope="module")
def demo(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[Demo]:
    with (
        django_db_blocker.unblock(),  # type: ignore[attr-defined]
        time_machine.travel(AS_OF),
        transaction.atomic(),
    ):
        demo_seed(actor=SYSTEM, as_of=AS_OF, days=DAYS)
        reader = make_user("consistency@example.com")
        accounts = list(Account.objects.order_by("number"))
        for account in accounts:
            make_membership(reader, Role.OWNER, account=account)
        group = Organisation.objects.get(name=GROUP, parent=None)
        make_membership(reader, Role.OWNER, organisation=group)
        yield Demo(AS_OF, accounts, reader, group)
        transaction.set_rollback(True)
