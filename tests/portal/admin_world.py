"""A world for the admin walks: the browser tests' Harbour (a group, households with a wallet,
top-ups, daily charges, bills and their lines, an alert) and one record of every other model the
admin shows, so that every change form has something to open. Staff sign in as `root`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from allauth.usersessions.models import UserSession
from django.contrib import admin
from django.db import models
from django.test import Client
from django.utils import timezone

from billing.models import (
    BillRun,
    Holiday,
    ShortageWarning,
    WarningPolicy,
    WebhookEvent,
    WebhookRejection,
)
from billing.services.exports import export_request
from meters.models import ImportBatch, Meter, ReadingConflict, ReadingEdit, Register
from meters.services.supply import meter_command_create
from portal.audit.services import audit_anchor_record
from portal.notifications.models import Notification
from portal.notifications.topics import Topic
from portal.tenancy.roles import Role
from portal.tenancy.services.api_keys import api_key_create
from portal.tenancy.services.invitations import invitation_create
from portal.users.models import User
from tests.browser.world import Harbour, harbour_seed
from tests.factories import SYSTEM, make_user


@dataclass
class AdminWorld:
    harbour: Harbour
    root: User
    warning: ShortageWarning

    def client(self, language: str) -> Client:
        client = Client(HTTP_ACCEPT_LANGUAGE=language)
        client.force_login(self.root)
        return client

    def first_of_each(self) -> dict[type[models.Model], models.Model]:
        """One object of every model the admin lists (for its change form)."""
        found: dict[type[models.Model], models.Model] = {}
        for model in admin.site._registry:
            obj = model._default_manager.order_by("pk").first()
            if obj is not None:
                found[model] = obj
        return found


def admin_world() -> AdminWorld:
    harbour = harbour_seed()
    now = timezone.now()
    root = make_user("root@utility.example", staff=True)
    TOTP.activate(root, generate_totp_secret())
    Holiday.objects.create(day=dt.date(2026, 6, 19), name="Dragon Boat Festival")
    WarningPolicy.objects.create(organisation=harbour.group, thresholds=[7, 3, 1, 0])
    warning = ShortageWarning.objects.create(
        account=harbour.prepaid,
        threshold=3,
        crossing=1,
        level=0,
        balance=-261_89,
        days_left=Decimal("0.0"),
        created_at=now,
    )
    Notification.objects.create(
        user=harbour.resident,
        account=harbour.prepaid,
        topic=Topic.SHORTAGE,
        channel=Notification.Channel.EMAIL,
        key=f"warning:{warning.pk}",
        created_at=now,
    )
    BillRun.objects.create(
        period_start=dt.date(2026, 1, 1),
        period_end=dt.date(2026, 2, 1),
        status=BillRun.Status.DONE,
        bills=1,
        started_at=now,
        finished_at=now,
        created_by_label=root.email,
    )
    WebhookEvent.objects.create(
        provider="sandbox",
        event_id="evt_1",
        event_type="payment.succeeded",
        body="{}",
        verified=True,
        received_at=now,
    )
    WebhookRejection.objects.create(
        provider="sandbox",
        reason="rejected: bad signature",
        hour=now.replace(minute=0, second=0, microsecond=0),
        count=3,
        last_digest="0" * 64,
        last_size=120,
        last_address="203.0.113.9",
        last_at=now,
    )
    export_request(account=harbour.prepaid, actor=SYSTEM, as_of=now)
    invitation_create(
        email="new.member@example.com",
        role=Role.VIEWER,
        organisation=harbour.commercial,
        actor=SYSTEM,
    )
    api_key_create(organisation=harbour.group, name="Head-end", actor=SYSTEM)
    meter = Meter.objects.order_by("pk").first()
    assert meter is not None
    meter_command_create(
        meter_id=meter.pk,
        command="relay_disconnect",
        reason="credit used up",
        idempotency_key="walk",
        actor=SYSTEM,
    )
    register = Register.objects.filter(meter=meter).first()
    batch = ImportBatch.objects.order_by("pk").first()
    assert register is not None
    ReadingConflict.objects.create(
        register=register, ts=now, value=1000, existing_value=900, batch=batch, line=2
    )
    ReadingEdit.objects.create(
        register=register,
        ts=now,
        old_value=900,
        old_quality=0,
        old_flags=0,
        new_value=1000,
        reason="meter fault",
        edited_by=root,
    )
    assert audit_anchor_record() is not None
    UserSession.objects.create(
        user=harbour.resident,
        ip="127.0.0.1",
        session_key="walk-session",
        user_agent="Mozilla/5.0 (X11; Linux x86_64)",
    )
    return AdminWorld(harbour=harbour, root=root, warning=warning)
