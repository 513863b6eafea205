"""seed_demo creates the demo once; running it again changes nothing at all."""

from __future__ import annotations

from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.test import Client

from portal.audit.selectors import audit_chain_verify
from portal.tenancy.models import Account, Membership, Organisation
from portal.tenancy.roles import Role
from portal.web.demo import DEMO_PASSWORD

pytestmark = pytest.mark.django_db


def _counts() -> dict[str, int]:
    return {model._meta.label: model._default_manager.count() for model in apps.get_models()}


def test_seed_demo_builds_the_demo_and_prints_the_logins() -> None:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    text = out.getvalue()
    group = Organisation.objects.get(name="Harbour Holdings", parent=None)
    subsidiaries = Organisation.objects.filter(parent=group)
    assert subsidiaries.count() == 2
    for subsidiary in subsidiaries:
        assert Account.objects.filter(organisation=subsidiary).count() >= 3
    assert Account.objects.filter(organisation__isnull=True).count() == 3
    assert {Role(m.role) for m in Membership.objects.all()} == set(Role)
    assert "admin@example.com" in text and DEMO_PASSWORD in text
    assert audit_chain_verify().ok


def test_running_it_twice_changes_nothing() -> None:
    call_command("seed_demo", stdout=StringIO())
    first = _counts()
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert _counts() == first
    assert "0 objects created" in out.getvalue()


def test_the_seeded_logins_work() -> None:
    call_command("seed_demo", stdout=StringIO())
    client = Client()
    response = client.post(
        "/accounts/login/", {"login": "chen@example.com", "password": DEMO_PASSWORD}
    )
    assert response.status_code == 302
    assert "Chen household" in client.get("/").content.decode()
