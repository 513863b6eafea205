"""The cross-tenant probe: every scoped URL, requested by members of another tenant in every
role, with the first tenant's ids, answers 404 and never shows the first tenant's data.

A URL with a kwarg that has no factory below fails the test: adding a URL forces adding a
factory, and so adding the URL to the probe.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import get_resolver, reverse
from django.utils import timezone

from meters.models import ImportBatch
from meters.services.imports import batch_create
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.tenancy.api.base import AccountAPIView, OrganisationAPIView, OrganisationKeyAPIView
from portal.tenancy.models import Membership, Organisation
from portal.tenancy.roles import Role
from portal.tenancy.scopes import Scope, scopes_for
from portal.tenancy.scoping import SealedScopedMixin
from portal.tenancy.services.api_keys import api_key_create
from portal.tenancy.services.invitations import invitation_create
from portal.tenancy.views.base import AccountView
from portal.users.models import User
from tests.conftest import World
from tests.factories import SYSTEM, make_account, make_membership, make_organisation, make_user
from tests.portal.tenancy.urlwalk import Route, walk

SCOPED_ROUTES = [route for route in walk(get_resolver().url_patterns) if route.scoped]
MARKERS = ("Account A", "Group")  # names of the probed tenants, never shown to outsiders


def _kind(route: Route) -> str:
    cls = route.view_class
    assert cls is not None
    if issubclass(cls, OrganisationKeyAPIView):
        return "key"
    return "account" if issubclass(cls, AccountView | AccountAPIView) else "organisation"


def _membership_id(world: World, kind: str) -> uuid.UUID:
    if kind == "account":
        return Membership.objects.get(user=world.alice, account=world.account_a).public_id
    return Membership.objects.get(user=world.group_manager, organisation=world.group).public_id


def _invitation_id(world: World, kind: str) -> uuid.UUID:
    tenant: dict[str, Any] = (
        {"account": world.account_a} if kind == "account" else {"organisation": world.group}
    )
    invitation = invitation_create(
        email="invitee@example.com", role=Role.VIEWER, actor=SYSTEM, as_of=timezone.now(), **tenant
    )
    return invitation.public_id


def _batch_id(world: World, kind: str) -> uuid.UUID:
    batch = batch_create(
        source=ImportBatch.Source.UPLOAD,
        fmt=ImportBatch.Format.CSV,
        content=io.BytesIO(
            f"meter_serial,timestamp,value,unit\nGroup-{uuid.uuid4()},x,1,Wh\n".encode()
        ),
        original_name="Group readings.csv",
        organisation=world.group,
        actor=SYSTEM,
        as_of=timezone.now(),
    )
    return batch.public_id


def _api_key_id(world: World, kind: str) -> uuid.UUID:
    api_key, _key = api_key_create(organisation=world.group, name="Group head-end", actor=SYSTEM)
    return api_key.public_id


def _bill_id(world: World, kind: str) -> uuid.UUID:
    import datetime as dt

    from billing.models import Bill

    # Several URLs take a bill (detail, PDF): one bill per account and period, so reuse it.
    existing = Bill.objects.filter(account=world.account_a).first()
    if existing is not None:
        return existing.public_id
    bill = Bill.objects.create(
        account=world.account_a,
        number="RES-2026-000001",
        sequence_number=1,
        payment_reference="RES20260000010",
        period_start=dt.date(2026, 4, 1),
        period_end=dt.date(2026, 5, 1),
        currency=world.account_a.currency,
        status=Bill.Status.ISSUED,
        created_at=timezone.now(),
    )
    return bill.public_id


def _topup_id(world: World, kind: str) -> uuid.UUID:
    from billing.services.ledger import wallet_create
    from billing.services.topups import topup_checkout_start, topup_create

    wallet_create(account=world.account_a, actor=SYSTEM)
    topup, _new = topup_create(
        account=world.account_a,
        amount=500,
        idempotency_key=str(uuid.uuid4()),
        actor=SYSTEM,
        as_of=timezone.now(),
    )
    topup, _url = topup_checkout_start(topup=topup, actor=SYSTEM, as_of=timezone.now())
    return topup.public_id


def _event_id(world: World, kind: str) -> Any:
    # MeterEvent has no public id: its URL carries the integer key (scoped like every other).
    import datetime as dt

    from meters.models import Meter, MeterEvent, MeterInstallation, ServicePoint
    from meters.services.supply import supply_start

    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    point = ServicePoint.objects.create(code=f"SP-A-{uuid.uuid4()}", kind="water")
    meter = Meter.objects.create(serial=f"A-{uuid.uuid4()}", kind="water", max_rate=1000)
    MeterInstallation.objects.create(meter=meter, service_point=point, installed_at=start)
    supply_start(account=world.account_a, service_point=point, start=start, actor=SYSTEM)
    event = MeterEvent.objects.create(
        meter=meter,
        service_point=point,
        account=world.account_a,
        kind=MeterEvent.Kind.LEAK,
        severity=MeterEvent.Severity.SERIOUS,
        occurred_at=start + dt.timedelta(days=1),
    )
    return event.pk


def _export_id(world: World, kind: str) -> uuid.UUID:
    from billing.services.exports import export_request

    # Asking again returns the open export, so the status and download URLs share one.
    export = export_request(account=world.account_a, actor=SYSTEM, as_of=timezone.now())
    return export.public_id


URL_KWARG_FACTORIES: dict[str, Callable[[World, str], uuid.UUID]] = {
    "account_id": lambda world, kind: world.account_a.public_id,
    "org_id": lambda world, kind: world.group.public_id,
    "membership_id": _membership_id,
    "invitation_id": _invitation_id,
    "batch_id": _batch_id,
    "api_key_id": _api_key_id,
    "topup_id": _topup_id,
    "bill_id": _bill_id,
    "event_id": _event_id,
    "export_id": _export_id,
}


def _url(route: Route, world: World, **overrides: uuid.UUID) -> str:
    kind = _kind(route)
    kwargs: dict[str, Any] = {}
    for name in route.converters:
        if name not in URL_KWARG_FACTORIES:
            pytest.fail(f"{route.route}: no factory for URL kwarg {name!r}; add one")
        kwargs[name] = overrides.get(name) or URL_KWARG_FACTORIES[name](world, kind)
    return reverse(route.name or "", kwargs=kwargs)


def _ids(route: Route) -> str:
    return route.name or route.route


def test_the_probe_covers_every_scoped_url() -> None:
    names = {route.name for route in SCOPED_ROUTES}
    assert len(SCOPED_ROUTES) >= 15
    assert None not in names, "every scoped URL needs a name so the probe can reverse it"


@pytest.fixture
def other_group(world: World) -> Organisation:
    other = make_organisation("Other group")
    make_account("Other account", organisation=other)
    return other


@pytest.fixture
def outsiders(world: World, other_group: Organisation) -> dict[Role, User]:
    """One member per role of *other* tenants: an account B and another group."""
    people: dict[Role, User] = {}
    for role in Role:
        user = make_user(f"outsider-{role.api_name}@example.com")
        make_membership(user, role, account=world.account_b)
        make_membership(user, role, organisation=other_group)
        people[role] = user
    return people


def _key_client(organisation: Organisation) -> Client:
    _api_key, key = api_key_create(organisation=organisation, name="probe", actor=SYSTEM)
    return Client(HTTP_AUTHORIZATION=f"Api-Key {key}")


@pytest.mark.parametrize("route", SCOPED_ROUTES, ids=_ids)
@pytest.mark.parametrize("role", list(Role), ids=lambda role: role.api_name)
def test_members_of_another_tenant_get_404(
    route: Route,
    role: Role,
    world: World,
    outsiders: dict[Role, User],
    client_for: Callable[[User], Client],
) -> None:
    other_group = Organisation.objects.get(name="Other group")
    if _kind(route) == "key":
        # A machine has no role: the other group's API key stands for every role.
        if role != Role.OWNER:
            pytest.skip("API keys carry no role")
        client = _key_client(other_group)
    else:
        client = client_for(outsiders[role])
    url = _url(route, world)
    for method in ("get", "post"):
        response = getattr(client, method)(url)
        body = response.content.decode()
        assert not any(marker in body for marker in MARKERS), f"{method.upper()} {url}"
        if _kind(route) == "key" and not route.converters:
            # The tenant comes from the key, not the URL: the other group sees its own.
            assert response.status_code < 500, f"{method.upper()} {url}"
            continue
        # A machine endpoint finds its object in the handler: a method it lacks is refused
        # first, and 405 tells nothing about the object either.
        allowed = {404, 405} if not hasattr(route.view_class, method) else {404}
        assert response.status_code in allowed, f"{method.upper()} {url} as {role.label}"


@pytest.mark.parametrize(
    "route",
    [r for r in SCOPED_ROUTES if "org_id" in r.converters and len(r.converters) > 1],
    ids=_ids,
)
def test_an_organisation_owner_cannot_reach_another_groups_objects_through_their_own(
    route: Route,
    world: World,
    other_group: Organisation,
    client_for: Callable[[User], Client],
) -> None:
    owner = make_user("other-owner@example.com")
    make_membership(owner, Role.OWNER, organisation=other_group)
    client = client_for(owner)
    url = _url(route, world, org_id=other_group.public_id)
    for method in ("get", "post"):
        handled = hasattr(route.view_class, method)
        expected = {404} if handled else {404, 405}
        assert getattr(client, method)(url).status_code in expected, f"{method.upper()} {url}"


@pytest.mark.parametrize(
    "route",
    [r for r in SCOPED_ROUTES if "account_id" in r.converters and len(r.converters) > 1],
    ids=_ids,
)
def test_an_owner_cannot_reach_another_tenants_objects_through_their_own_tenant(
    route: Route, world: World, client_for: Callable[[User], Client]
) -> None:
    # charlie owns account B; the object ids (membership, invitation) belong to account A.
    client = client_for(world.charlie)
    url = _url(route, world, account_id=world.account_b.public_id)
    assert client.post(url).status_code == 404


def test_anonymous_visitors_are_sent_to_sign_in(world: World) -> None:
    client = Client()
    for route in SCOPED_ROUTES:
        response = client.get(_url(route, world))
        if _kind(route) == "key":
            assert response.status_code == 401, route.route
            assert response["WWW-Authenticate"] == "Api-Key"
        elif issubclass(route.view_class, AccountAPIView | OrganisationAPIView):  # type: ignore[arg-type]
            assert response.status_code == 403, route.route
        else:
            assert response.status_code == 302, route.route
            assert response["Location"].startswith(reverse("account_login"))


def _needed(route: Route, method: str) -> Scope:
    cls = route.view_class
    assert cls is not None and issubclass(cls, SealedScopedMixin)
    return cls.scope_for(method)


@pytest.mark.parametrize("route", SCOPED_ROUTES, ids=_ids)
def test_a_member_whose_role_lacks_the_scope_gets_403_and_the_denial_is_audited(
    route: Route, world: World, client_for: Callable[[User], Client]
) -> None:
    if _kind(route) == "key":
        pytest.skip("machine endpoints take no roles: tests/meters/test_readings_api.py")
    viewer = world.bob if _kind(route) == "account" else make_user("org-viewer@example.com")
    if _kind(route) == "organisation":
        make_membership(viewer, Role.VIEWER, organisation=world.group)
    url = _url(route, world)
    client = client_for(viewer)
    for method in ("get", "post"):
        before = AuditLogEntry.objects.filter(event_type=AuditEvent.ACCESS_DENIED).count()
        response = getattr(client, method)(url)
        lacks = _needed(route, method) not in scopes_for(Role.VIEWER)
        if lacks:
            assert response.status_code == 403, f"{method.upper()} {url}"
            denials = AuditLogEntry.objects.filter(event_type=AuditEvent.ACCESS_DENIED)
            assert denials.count() == before + 1
            assert denials.order_by("-id")[0].actor_id == viewer.pk
        else:
            assert response.status_code not in (403, 404), f"{method.upper()} {url}"


def test_a_group_manager_reaches_a_subsidiarys_account(
    world: World, client_for: Callable[[User], Client]
) -> None:
    client = client_for(world.group_manager)
    for account in (world.acc1, world.acc2):
        response = client.get(reverse("tenancy:account_home", args=[account.public_id]))
        assert response.status_code == 200
        assert account.name in response.content.decode()
    response = client.get(reverse("tenancy:organisation_home", args=[world.sub2.public_id]))
    assert response.status_code == 200


def test_a_subsidiary_manager_does_not_reach_a_sibling_subsidiarys_account(
    world: World, client_for: Callable[[User], Client]
) -> None:
    client = client_for(world.sub1_manager)
    assert (
        client.get(reverse("tenancy:account_home", args=[world.acc1.public_id])).status_code == 200
    )
    assert (
        client.get(reverse("tenancy:account_home", args=[world.acc2.public_id])).status_code == 404
    )
    assert (
        client.get(reverse("tenancy:organisation_home", args=[world.sub2.public_id])).status_code
        == 404
    )
    # Nor the group above it.
    assert (
        client.get(reverse("tenancy:organisation_home", args=[world.group.public_id])).status_code
        == 404
    )
