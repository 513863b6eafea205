"""Shared fixtures: the tenants of the scoping tests and logged-in clients.

account A  (household)   alice OWNER, bob VIEWER, pat PAYER, max MANAGER
account B  (household)   charlie OWNER
group ─┬─ sub1 ── acc1   group_manager (MANAGER on group), sub1_manager (MANAGER on sub1)
       └─ sub2 ── acc2   sub2_manager
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import translation

from portal.tenancy.models import Account, Organisation
from portal.tenancy.roles import Role
from portal.users.models import User
from tests.factories import make_account, make_membership, make_organisation, make_user

# Playwright's sync API runs an event loop in the test thread; Django must still be allowed
# to use the database from that thread in browser tests.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright's own browser download is not available


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
        ],
    }


@pytest.fixture
def transactional_db(django_db_serialized_rollback: None, transactional_db: None) -> None:
    """Transactional tests end with a flush; restore what migrations created (staff groups)."""


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    # Each xdist worker has its own Redis database (settings.test), so this is safe.
    cache.clear()


@pytest.fixture(autouse=True)
def _reset_language() -> Iterator[None]:
    # A request in Chinese leaves Chinese active in the test's thread (LocaleMiddleware does
    # not deactivate it); the next test in the same worker must start in the default language.
    yield
    translation.deactivate()


@dataclass
class World:
    alice: User
    bob: User
    pat: User
    max: User
    charlie: User
    account_a: Account
    account_b: Account
    group: Organisation
    sub1: Organisation
    sub2: Organisation
    acc1: Account
    acc2: Account
    group_manager: User
    sub1_manager: User
    sub2_manager: User


@pytest.fixture
def world(db: Any) -> World:
    alice = make_user("alice@example.com")
    bob = make_user("bob@example.com")
    pat = make_user("pat@example.com")
    max_ = make_user("max@example.com")
    charlie = make_user("charlie@example.com")
    account_a = make_account("Account A")
    account_b = make_account("Account B")
    make_membership(alice, Role.OWNER, account=account_a)
    make_membership(bob, Role.VIEWER, account=account_a)
    make_membership(pat, Role.PAYER, account=account_a)
    make_membership(max_, Role.MANAGER, account=account_a)
    make_membership(charlie, Role.OWNER, account=account_b)
    group = make_organisation("Group")
    sub1 = make_organisation("Sub 1", parent=group)
    sub2 = make_organisation("Sub 2", parent=group)
    acc1 = make_account("Acc 1", organisation=sub1)
    acc2 = make_account("Acc 2", organisation=sub2)
    group_manager = make_user("gm@example.com")
    sub1_manager = make_user("s1m@example.com")
    sub2_manager = make_user("s2m@example.com")
    make_membership(group_manager, Role.MANAGER, organisation=group)
    make_membership(sub1_manager, Role.MANAGER, organisation=sub1)
    make_membership(sub2_manager, Role.MANAGER, organisation=sub2)
    return World(
        alice=alice,
        bob=bob,
        pat=pat,
        max=max_,
        charlie=charlie,
        account_a=account_a,
        account_b=account_b,
        group=group,
        sub1=sub1,
        sub2=sub2,
        acc1=acc1,
        acc2=acc2,
        group_manager=group_manager,
        sub1_manager=sub1_manager,
        sub2_manager=sub2_manager,
    )


@pytest.fixture
def client_for(db: Any) -> Callable[[User], Client]:
    """Return a Django test client signed in as the given user."""

    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make
