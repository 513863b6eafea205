"""The staff admin: staff roles, and every change made there lands in the audit log."""

from __future__ import annotations

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.contrib.auth.models import Group
from django.test import Client

from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.tenancy.models import Account, Membership, Organisation
from portal.users.models import User
from tests.conftest import World
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(db: None) -> tuple[Client, User]:
    staff = make_user("root@example.com", staff=True)
    TOTP.activate(staff, generate_totp_secret())
    client = Client()
    client.force_login(staff)
    return client, staff


def _new_entries(since: int) -> list[AuditLogEntry]:
    return list(AuditLogEntry.objects.filter(id__gt=since).order_by("id"))


def _last_id() -> int:
    return AuditLogEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_the_staff_groups_exist_with_their_permissions() -> None:
    groups = {
        g.name: set(g.permissions.values_list("codename", flat=True)) for g in Group.objects.all()
    }
    assert set(groups) >= {"support", "billing officer", "metering technician", "auditor"}
    assert "view_auditlogentry" in groups["auditor"]
    assert not any(code.startswith(("add_", "change_", "delete_")) for code in groups["auditor"])
    assert "change_membership" in groups["support"]


def test_granting_staff_access_in_the_admin_is_audited(admin_client: tuple[Client, User]) -> None:
    client, staff = admin_client
    person = make_user("helper@example.com")
    support = Group.objects.get(name="support")
    start = _last_id()
    response = client.post(
        f"/admin/users/user/{person.pk}/change/",
        {
            "email": "helper@example.com",
            "name": "Helpful Person",
            "is_active": "on",
            "is_staff": "on",
            "groups": [support.pk],
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    entries = _new_entries(start)
    assert [e.event_type for e in entries] == [AuditEvent.USER_STAFF_ACCESS_CHANGED]
    entry = entries[0]
    assert entry.actor_id == staff.pk
    assert entry.data["changes"]["is_staff"] == {"before": False, "after": True}
    assert entry.data["changes"]["groups"] == {"before": [], "after": ["support"]}
    assert entry.data["changes"]["name"] == {"before": "", "after": "Helpful Person"}
    person.refresh_from_db()
    assert person.is_staff and list(person.groups.all()) == [support]


def test_creating_an_organisation_and_account_in_the_admin_goes_through_services(
    admin_client: tuple[Client, User],
) -> None:
    client, staff = admin_client
    start = _last_id()
    response = client.post("/admin/tenancy/organisation/add/", {"name": "Admin Org"})
    assert response.status_code == 302, response.content.decode()[:2000]
    org = Organisation.objects.get(name="Admin Org")
    assert org.path == f"/{org.pk}/"
    response = client.post(
        "/admin/tenancy/account/add/",
        {
            "name": "Admin account",
            "payment_mode": "postpaid",
            "currency": "EUR",
            "time_zone": "Europe/Amsterdam",
            "organisation": org.pk,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    account = Account.objects.get(name="Admin account")
    entries = _new_entries(start)
    assert [e.event_type for e in entries] == [
        AuditEvent.ORGANISATION_CREATED,
        AuditEvent.ACCOUNT_CREATED,
    ]
    assert all(e.actor_id == staff.pk for e in entries)
    assert entries[1].account_id == account.pk and entries[1].organisation_id == org.pk


def test_the_admin_keeps_the_last_owner_rule(
    admin_client: tuple[Client, User], world: World
) -> None:
    client, _ = admin_client
    owner = Membership.objects.get(user=world.alice, account=world.account_a)
    start = _last_id()
    response = client.post(
        f"/admin/tenancy/membership/{owner.pk}/delete/", {"post": "yes"}, follow=True
    )
    assert Membership.objects.filter(pk=owner.pk).exists()
    assert "last owner" in response.content.decode()
    assert _new_entries(start) == []
    viewer = Membership.objects.get(user=world.bob, account=world.account_a)
    client.post(f"/admin/tenancy/membership/{viewer.pk}/delete/", {"post": "yes"})
    assert not Membership.objects.filter(pk=viewer.pk).exists()
    assert [e.event_type for e in _new_entries(start)] == [AuditEvent.MEMBER_REMOVED]


def test_the_audit_log_is_read_only_in_the_admin(
    admin_client: tuple[Client, User], world: World
) -> None:
    client, _ = admin_client
    entry = AuditLogEntry.objects.order_by("id").first()
    assert entry is not None
    assert client.get("/admin/audit/auditlogentry/").status_code == 200
    assert client.get(f"/admin/audit/auditlogentry/{entry.pk}/change/").status_code == 200
    assert client.get("/admin/audit/auditlogentry/add/").status_code == 403
    assert (
        client.post(f"/admin/audit/auditlogentry/{entry.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    before = entry.actor_label
    client.post(f"/admin/audit/auditlogentry/{entry.pk}/change/", {"actor_label": "forged"})
    entry.refresh_from_db()
    assert entry.actor_label == before


def test_users_are_deactivated_not_deleted(admin_client: tuple[Client, User]) -> None:
    client, _ = admin_client
    person = make_user()
    assert client.get(f"/admin/users/user/{person.pk}/delete/").status_code == 403


def test_support_staff_cannot_change_other_staff(db: None) -> None:
    support = make_user("support@example.com", staff=False)
    support.is_staff = True
    support.save()
    support.groups.add(Group.objects.get(name="support"))
    TOTP.activate(support, generate_totp_secret())
    superuser = make_user("root@example.com", staff=True)
    resident = make_user("resident@example.com")
    client = Client()
    client.force_login(support)
    response = client.post(
        f"/admin/users/user/{superuser.pk}/change/",
        {"email": "support@example.com", "name": "", "is_active": "on"},
    )
    assert response.status_code == 403
    superuser.refresh_from_db()
    assert superuser.email == "root@example.com"
    # Residents they may help.
    page = client.get(f"/admin/users/user/{resident.pk}/change/")
    assert page.status_code == 200
    assert 'name="is_staff"' not in page.content.decode()


def test_an_email_changed_by_staff_replaces_the_old_address(
    admin_client: tuple[Client, User],
) -> None:
    from allauth.account.models import EmailAddress

    client, _ = admin_client
    person = make_user("old@example.com")
    response = client.post(
        f"/admin/users/user/{person.pk}/change/",
        {"email": "new@example.com", "name": "", "is_active": "on"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    addresses = list(EmailAddress.objects.filter(user=person).values_list("email", "verified"))
    assert addresses == [("new@example.com", False)]


def test_staff_opening_a_persons_or_accounts_record_is_audited(
    admin_client: tuple[Client, User], world: World
) -> None:
    client, staff = admin_client
    start = _last_id()
    assert client.get(f"/admin/users/user/{world.bob.pk}/change/").status_code == 200
    assert client.get(f"/admin/tenancy/account/{world.account_a.pk}/change/").status_code == 200
    entries = _new_entries(start)
    assert [e.event_type for e in entries] == [
        AuditEvent.USER_VIEWED_BY_STAFF,
        AuditEvent.ACCOUNT_VIEWED_BY_STAFF,
    ]
    assert all(e.actor_id == staff.pk for e in entries)
    assert entries[1].account_id == world.account_a.pk
