"""A real Celery worker, consuming from the real Redis broker, delivers an invitation."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from celery.contrib.testing.worker import start_worker
from django.core import mail
from django.db import transaction

from portal.celery import app
from portal.tenancy.roles import Role
from portal.tenancy.services.invitations import invitation_create
from tests.factories import SYSTEM, make_account


@pytest.fixture
def celery_worker(transactional_db: None) -> Iterator[None]:
    with app.connection_for_write() as connection:
        # Start from an empty broker database: nothing left over from another run.
        connection.default_channel.client.flushdb()  # type: ignore[attr-defined]
    # No ping check: results are not stored (task_ignore_result), so the test polls instead.
    with start_worker(
        app, pool="solo", queues=["default", "notifications"], perform_ping_check=False
    ):
        yield


def test_an_invitation_email_goes_out_through_the_worker(celery_worker: None) -> None:
    account = make_account("Worker test")
    with transaction.atomic():
        invitation_create(
            email="queued@example.com", role=Role.VIEWER, account=account, actor=SYSTEM
        )
        # Nothing is enqueued before the commit.
        assert mail.outbox == []
    deadline = time.monotonic() + 30
    while not mail.outbox and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [m.to for m in mail.outbox] == [["queued@example.com"]]
