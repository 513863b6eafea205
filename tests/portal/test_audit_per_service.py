"""Every service that changes state writes exactly one audit entry.

The registry below must name every public function of every `services.py`; a new service without
a scenario (or a reasoned exemption) fails `test_every_service_is_covered`.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path

import pytest
from allauth.mfa.models import Authenticator
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from portal.audit.actors import SystemActor, UserActor
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.tenancy.models import Membership
from portal.tenancy.roles import Role
from portal.tenancy.scopes import Scope
from portal.tenancy.services.access import (
    access_denied_record,
    access_not_found_record,
    csv_export_record,
)
from portal.tenancy.services.accounts import (
    account_create,
    account_staff_view_record,
    account_update,
)
from portal.tenancy.services.api_keys import api_key_create, api_key_revoke
from portal.tenancy.services.invitations import (
    invitation_accept,
    invitation_create,
    invitation_revoke,
    invitations_expire,
)
from portal.tenancy.services.members import (
    membership_change_role,
    membership_create,
    membership_remove,
)
from portal.tenancy.services.organisations import (
    organisation_create,
    organisation_move,
    organisation_update,
)
from portal.tenancy.tokens import invitation_token
from portal.users import services as users
from portal.users.models import User
from tests.conftest import World
from tests.factories import SYSTEM, make_organisation, make_user

ROOT = Path(__file__).resolve().parents[2]
# A scenario prepares what the change needs and returns the change itself, so that only the
# change under test is counted.
Scenario = Callable[[World], Callable[[], object]]


def _invite(world: World) -> Callable[[], object]:
    return lambda: invitation_create(
        email="new@example.com", role=Role.VIEWER, account=world.account_a, actor=SYSTEM
    )


def _move(world: World) -> Callable[[], object]:
    elsewhere = make_organisation("Elsewhere")
    return lambda: organisation_move(organisation=world.sub2, parent=elsewhere, actor=SYSTEM)


def _accept(world: World) -> Callable[[], object]:
    invitation = invitation_create(
        email="new@example.com", role=Role.VIEWER, account=world.account_a, actor=SYSTEM
    )
    newcomer = make_user("new@example.com")
    token = invitation_token(public_id=invitation.public_id, nonce=invitation.nonce)
    return lambda: invitation_accept(
        token=token, actor=UserActor(user=newcomer), as_of=timezone.now()
    )


def _revoke(world: World) -> Callable[[], object]:
    invitation = invitation_create(
        email="new@example.com", role=Role.VIEWER, account=world.account_a, actor=SYSTEM
    )
    return lambda: invitation_revoke(invitation=invitation, actor=SYSTEM, as_of=timezone.now())


def _expire(world: World) -> Callable[[], object]:
    invitation_create(
        email="new@example.com", role=Role.VIEWER, account=world.account_a, actor=SYSTEM
    )
    later = timezone.now() + dt.timedelta(days=30)
    return lambda: invitations_expire(as_of=later, actor=SYSTEM)


def _member(world: World) -> Membership:
    return Membership.objects.get(user=world.bob, account=world.account_a)


# Each scenario either performs the change itself, or prepares and returns a callable that does,
# so that only the change under test is counted.
SCENARIOS: dict[str, tuple[Scenario, AuditEvent]] = {
    "portal.tenancy.services.organisations.organisation_create": (
        lambda w: lambda: organisation_create(name="New", actor=SYSTEM),
        AuditEvent.ORGANISATION_CREATED,
    ),
    "portal.tenancy.services.organisations.organisation_update": (
        lambda w: (
            lambda: organisation_update(
                organisation=w.group, changes={"require_mfa": True}, actor=SYSTEM
            )
        ),
        AuditEvent.ORGANISATION_UPDATED,
    ),
    "portal.tenancy.services.organisations.organisation_move": (
        _move,
        AuditEvent.ORGANISATION_MOVED,
    ),
    "portal.tenancy.services.accounts.account_create": (
        lambda w: (
            lambda: account_create(
                name="New",
                payment_mode="postpaid",
                currency="HKD",
                time_zone="Asia/Hong_Kong",
                actor=SYSTEM,
            )
        ),
        AuditEvent.ACCOUNT_CREATED,
    ),
    "portal.tenancy.services.accounts.account_update": (
        lambda w: (
            lambda: account_update(
                account=w.account_a, changes={"closed_at": timezone.now()}, actor=SYSTEM
            )
        ),
        AuditEvent.ACCOUNT_UPDATED,
    ),
    "portal.tenancy.services.accounts.account_staff_view_record": (
        lambda w: lambda: account_staff_view_record(account=w.account_a, actor=SYSTEM),
        AuditEvent.ACCOUNT_VIEWED_BY_STAFF,
    ),
    "portal.users.services.user_staff_view_record": (
        lambda w: lambda: users.user_staff_view_record(user=w.bob, actor=SYSTEM),
        AuditEvent.USER_VIEWED_BY_STAFF,
    ),
    "portal.tenancy.services.members.membership_create": (
        lambda w: (
            lambda: membership_create(
                user=w.charlie, role=Role.VIEWER, account=w.account_a, actor=SYSTEM
            )
        ),
        AuditEvent.MEMBER_ADDED,
    ),
    "portal.tenancy.services.members.membership_change_role": (
        lambda w: (
            lambda: membership_change_role(membership=_member(w), role=Role.PAYER, actor=SYSTEM)
        ),
        AuditEvent.MEMBER_ROLE_CHANGED,
    ),
    "portal.tenancy.services.members.membership_remove": (
        lambda w: lambda: membership_remove(membership=_member(w), actor=SYSTEM),
        AuditEvent.MEMBER_REMOVED,
    ),
    "portal.tenancy.services.invitations.invitation_create": (
        _invite,
        AuditEvent.INVITATION_CREATED,
    ),
    "portal.tenancy.services.invitations.invitation_accept": (
        _accept,
        AuditEvent.INVITATION_ACCEPTED,
    ),
    "portal.tenancy.services.invitations.invitation_revoke": (
        _revoke,
        AuditEvent.INVITATION_REVOKED,
    ),
    "portal.tenancy.services.invitations.invitations_expire": (
        _expire,
        AuditEvent.INVITATION_EXPIRED,
    ),
    "portal.tenancy.services.access.access_denied_record": (
        lambda w: (
            lambda: access_denied_record(
                actor=UserActor(user=w.bob), scope=Scope.AUDIT_READ, path="/x/", account=w.account_a
            )
        ),
        AuditEvent.ACCESS_DENIED,
    ),
    "portal.tenancy.services.access.access_not_found_record": (
        lambda w: (
            lambda: access_not_found_record(
                actor=UserActor(user=w.bob), path="/x/", account_public_id=w.account_b.public_id
            )
        ),
        AuditEvent.ACCESS_DENIED,
    ),
    "portal.tenancy.services.access.csv_export_record": (
        lambda w: (
            lambda: csv_export_record(
                actor=UserActor(user=w.group_manager),
                export="organisation_accounts",
                query="low=1",
                organisation=w.group,
            )
        ),
        AuditEvent.CSV_EXPORTED,
    ),
    "portal.users.services.user_create": (
        lambda w: lambda: users.user_create(email="made@example.com", actor=SYSTEM),
        AuditEvent.USER_CREATED,
    ),
    "portal.users.services.user_update": (
        lambda w: (
            lambda: users.user_update(
                user=w.bob,
                changes={"is_active": False},
                groups=[Group.objects.get(name="auditor")],
                actor=SYSTEM,
            )
        ),
        AuditEvent.USER_STAFF_ACCESS_CHANGED,
    ),
    "portal.users.services.auth_event_record": (
        lambda w: (
            lambda: users.auth_event_record(event=AuditEvent.LOGOUT, actor=UserActor(user=w.bob))
        ),
        AuditEvent.LOGOUT,
    ),
}


def _meters_world() -> dict[str, object]:
    """A meter with readings, installed at a service point an account is supplied at."""
    from meters.models import Register, ServicePoint
    from tests.meters.helpers import csv_rows, run_import

    run_import(csv_rows("AUD1", [("2026-03-01T00:15:00Z", 1.0), ("2026-03-01T00:30:00Z", 1.25)]))
    return {
        "register": Register.objects.get(meter__serial="AUD1"),
        "service_point": ServicePoint.objects.get(code="SP-AUD1"),
    }


def _batch_create(world: World) -> Callable[[], object]:
    import io

    from meters.services.imports import batch_create

    return lambda: batch_create(
        source="command",
        fmt="csv",
        content=io.BytesIO(b"meter_serial,timestamp,value,unit\n"),
        actor=SYSTEM,
        as_of=timezone.now(),
    )


def _pipeline_run(world: World) -> Callable[[], object]:
    import io

    from meters.ingest import pipeline
    from meters.services.imports import batch_create

    batch = batch_create(
        source="command",
        fmt="csv",
        content=io.BytesIO(b"meter_serial,timestamp,value,unit\nX,2026-03-01T00:00:00Z,1,kWh\n"),
        actor=SYSTEM,
        as_of=timezone.now(),
    )
    return lambda: pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=timezone.now())


def _reading_edit(world: World) -> Callable[[], object]:
    import datetime as dt

    from meters.services.readings import reading_edit

    register = _meters_world()["register"]
    return lambda: reading_edit(
        register=register,  # type: ignore[arg-type]
        ts=dt.datetime(2026, 3, 1, 0, 30, tzinfo=dt.UTC),
        new_value=1300,
        reason="misread",
        actor=SYSTEM,
    )


def _event_acknowledge(world: World) -> Callable[[], object]:
    from meters.models import Meter, MeterEvent
    from meters.services.events import meter_event_acknowledge

    meter = Meter.objects.create(serial="EV1", kind="water", max_rate=100)
    event = MeterEvent.objects.create(
        meter=meter, kind="leak", severity=30, occurred_at=timezone.now()
    )
    return lambda: meter_event_acknowledge(event=event, actor=SYSTEM, as_of=timezone.now())


def _command_create(world: World) -> Callable[[], object]:
    from meters.models import Meter
    from meters.services.supply import meter_command_create

    meter = Meter.objects.create(serial="CMD1", kind="water", max_rate=100)
    return lambda: meter_command_create(
        meter_id=meter.pk, command="valve_close", reason="test", idempotency_key="k1", actor=SYSTEM
    )


def _supply_start(world: World) -> Callable[[], object]:
    import datetime as dt

    from meters.services.supply import supply_start

    sp = _meters_world()["service_point"]
    return lambda: supply_start(
        account=world.account_a,
        service_point=sp,  # type: ignore[arg-type]
        start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        actor=SYSTEM,
    )


def _supply_update(world: World) -> Callable[[], object]:
    import datetime as dt

    from meters.services.supply import supply_start, supply_update

    sp = _meters_world()["service_point"]
    supply = supply_start(
        account=world.account_a,
        service_point=sp,  # type: ignore[arg-type]
        start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        actor=SYSTEM,
    )
    return lambda: supply_update(
        supply=supply, changes={"end": dt.datetime(2026, 3, 1, 0, 20, tzinfo=dt.UTC)}, actor=SYSTEM
    )


def _fleet_save(world: World) -> Callable[[], object]:
    from meters.models import ServicePoint
    from meters.services.fleet import fleet_save

    return lambda: fleet_save(instance=ServicePoint(code="FLEET1", kind="gas"), actor=SYSTEM)


def _inbound_flush(world: World) -> Callable[[], object]:
    from meters.services.inbound import inbound_flush, inbound_store

    inbound_store(
        source="chirpstack",
        messages=[("up", "dedup-1", {"deviceInfo": {"devEui": "01"}})],
        received_at=timezone.now(),
    )
    return lambda: inbound_flush(actor=SYSTEM, as_of=timezone.now())


def _inbox_collect(world: World) -> Callable[[], object]:
    import os
    import tempfile
    from pathlib import Path

    from django.test import override_settings

    from meters.services.inbound import inbox_collect

    inbox = tempfile.mkdtemp(prefix="inbox-")
    path = Path(inbox) / "drop.csv"
    path.write_text(f"meter_serial,timestamp,value,unit\nI{os.getpid()},2026-01-01T00:15Z,1,Wh\n")
    os.utime(path, (0, 0))

    def change() -> object:
        with override_settings(PORTAL_IMPORT_INBOX=inbox):
            return inbox_collect(actor=SYSTEM, as_of=timezone.now())

    return change


def _api_key_revoke(world: World) -> Callable[[], object]:
    api_key, _key = api_key_create(organisation=world.group, name="k", actor=SYSTEM)
    return lambda: api_key_revoke(api_key=api_key, actor=SYSTEM, as_of=timezone.now())


def _rollups_rebuild(world: World) -> Callable[[], object]:
    from meters.models import ServicePoint
    from meters.services.readings import rollups_rebuild

    sp = ServicePoint.objects.create(code="REBUILD1", kind="electricity", time_zone="Asia/Taipei")
    return lambda: rollups_rebuild(actor=SYSTEM, service_point_ids=[sp.pk])


def _readings_convert(world: World) -> Callable[[], object]:
    from django.db import connection

    from meters.models import Meter, Register
    from meters.services.storage import readings_convert

    meter = Meter.objects.create(serial="CONVERT1", kind="electricity", max_rate=250_000)
    register = Register.objects.create(
        meter=meter, code="import", unit="Wh", is_main=True, interval_seconds=900
    )
    with connection.cursor() as cursor:
        # A reading stored one row each, as before the day layout.
        cursor.execute(
            "INSERT INTO meters_readingside (register_id, ts, value, quality, flags) "
            "VALUES (%s, '2026-03-01 00:15Z', 1000, 0, 0)",
            [register.pk],
        )
    return lambda: readings_convert(actor=SYSTEM)


def _staff_with_a_factor(world: World) -> tuple[User, Authenticator]:
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    staff = make_user("factor.staff@example.com", staff=True)
    return staff, TOTP.activate(staff, generate_totp_secret()).instance


def _staff_factor_hold(world: World) -> Callable[[], object]:
    staff, factor = _staff_with_a_factor(world)
    return lambda: users.staff_factor_hold(
        user=staff, authenticator=factor, actor=SYSTEM, as_of=timezone.now()
    )


def _staff_factor_confirm(world: World) -> Callable[[], object]:
    import hashlib

    from portal.users.models import StaffFactorApproval

    staff, factor = _staff_with_a_factor(world)
    StaffFactorApproval.objects.create(
        user=staff,
        authenticator=factor,
        token_hash=hashlib.sha256(b"the-token").hexdigest(),
        created_at=timezone.now(),
    )
    return lambda: users.staff_factor_confirm(
        token="the-token", user=staff, actor=SYSTEM, as_of=timezone.now()
    )


SCENARIOS.update(
    {
        "meters.services.readings.rollups_rebuild": (_rollups_rebuild, AuditEvent.ROLLUPS_REBUILT),
        "meters.services.storage.readings_convert": (
            _readings_convert,
            AuditEvent.READINGS_CONVERTED,
        ),
        "portal.users.services.staff_factor_hold": (
            _staff_factor_hold,
            AuditEvent.STAFF_FACTOR_HELD,
        ),
        "portal.users.services.staff_factor_confirm": (
            _staff_factor_confirm,
            AuditEvent.STAFF_FACTOR_CONFIRMED,
        ),
        "portal.tenancy.services.api_keys.api_key_create": (
            lambda w: lambda: api_key_create(organisation=w.group, name="k", actor=SYSTEM),
            AuditEvent.API_KEY_CREATED,
        ),
        "portal.tenancy.services.api_keys.api_key_revoke": (
            _api_key_revoke,
            AuditEvent.API_KEY_REVOKED,
        ),
        "meters.services.imports.batch_create": (_batch_create, AuditEvent.IMPORT_BATCH_CREATED),
        "meters.ingest.pipeline.run": (_pipeline_run, AuditEvent.IMPORT_BATCH_FINISHED),
        "meters.services.readings.reading_edit": (_reading_edit, AuditEvent.READING_EDITED),
        "meters.services.events.meter_event_acknowledge": (
            _event_acknowledge,
            AuditEvent.METER_EVENT_ACKNOWLEDGED,
        ),
        "meters.services.supply.meter_command_create": (
            _command_create,
            AuditEvent.METER_COMMAND_CREATED,
        ),
        "meters.services.supply.supply_start": (_supply_start, AuditEvent.SUPPLY_STARTED),
        "meters.services.supply.supply_update": (_supply_update, AuditEvent.SUPPLY_UPDATED),
        "meters.services.fleet.fleet_save": (_fleet_save, AuditEvent.FLEET_CREATED),
        "meters.services.inbound.inbound_flush": (_inbound_flush, AuditEvent.IMPORT_BATCH_CREATED),
        "meters.services.inbound.inbox_collect": (_inbox_collect, AuditEvent.IMPORT_BATCH_CREATED),
    }
)

EXEMPT = {
    "portal.tenancy.services.api_keys.api_key_used": (
        "last-used bookkeeping; what the key is used for is audited by that service"
    ),
    "meters.services.inbound.inbound_purge": (
        "housekeeping of imported telemetry; its batch keeps it"
    ),
    "meters.services.inbound.inbound_store": (
        "device telemetry buffered for a batch; the batch that imports it is audited"
    ),
    "meters.services.events.meter_events_notify": (
        "delivery bookkeeping (notified_at) of stored events"
    ),
    "meters.services.events.derived_events_detect": (
        "events the readings imply, stored as data; acknowledging them is audited"
    ),
    # The audit write path itself.
    "portal.audit.services.audit_record": "is the audit entry",
    "portal.audit.services.audit_anchor_record": "records the chains' heads, not a change",
    "portal.tenancy.services.invitations.invitation_email_send": (
        "delivery bookkeeping (last_sent_at) of an invitation whose creation is audited"
    ),
}


# Domains with a services package keep their scenarios beside their tests, one module per
# services module: tests/<app path>/audit_scenarios_<module>.py with SCENARIOS and EXEMPT.
for _file in sorted(ROOT.glob("tests/**/audit_scenarios_*.py")):
    _module = importlib.import_module(".".join(_file.relative_to(ROOT).with_suffix("").parts))
    SCENARIOS.update(_module.SCENARIOS)
    EXEMPT.update(_module.EXEMPT)


def _public_services() -> set[str]:
    names = set()
    files = [*ROOT.glob("**/services.py"), *ROOT.glob("**/services/*.py")]
    for file in files:
        if ".venv" in file.parts or file.name == "__init__.py":
            continue
        module_name = ".".join(file.relative_to(ROOT).with_suffix("").parts)
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if (
                not name.startswith("_")
                and inspect.isfunction(value)
                and value.__module__ == module_name
            ):
                names.add(f"{module_name}.{name}")
    return names


# The import's stage machine records a batch's end itself, inside the stage's transaction.
AUDITED_OUTSIDE_SERVICES = {"meters.ingest.pipeline.run"}


def test_every_service_is_covered() -> None:
    assert _public_services() | AUDITED_OUTSIDE_SERVICES == set(SCENARIOS) | set(EXEMPT)


@pytest.mark.django_db
@pytest.mark.parametrize("service", sorted(SCENARIOS))
def test_the_service_writes_exactly_one_entry(service: str, world: World) -> None:
    prepare, event = SCENARIOS[service]
    change = prepare(world)
    before = AuditLogEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    with transaction.atomic():
        change()
    entries = list(AuditLogEntry.objects.filter(id__gt=before))
    assert [e.event_type for e in entries] == [event]
    entry = entries[0]
    assert entry.actor_label  # who
    assert entry.created_at  # when
    assert entry.hash and entry.prev_hash  # chained


def test_system_actors_are_labelled() -> None:
    assert SystemActor("task:x").label == "task:x"
