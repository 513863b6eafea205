"""The fleet: registering and updating meters."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import models, transaction

from meters.models import (
    ServicePoint,
)
from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.changes import apply_changes

logger = logging.getLogger(__name__)


@transaction.atomic
def fleet_save(
    *, instance: models.Model, actor: Actor, changes: Mapping[str, Any] | None = None
) -> models.Model:
    """Create (changes=None) or change a fleet object (service point, meter, register,
    installation) for staff in the admin; audited with the fields that changed."""
    label = instance._meta.verbose_name
    if changes is None:
        instance.full_clean()
        instance.save()
        audit_record(
            actor=actor,
            event=AuditEvent.FLEET_CREATED,
            target=instance,
            data={"model": str(label), "name": str(instance)},
        )
        return instance
    diff = apply_changes(
        instance,
        changes,
        allowed={f.name for f in instance._meta.concrete_fields},
        describe=lambda v: str(v) if isinstance(v, models.Model) else v,
    )
    if not diff:
        return instance
    instance.full_clean()
    instance.save(update_fields=list(diff))
    audit_record(
        actor=actor,
        event=AuditEvent.FLEET_UPDATED,
        target=instance,
        data={"model": str(label), "name": str(instance), "changes": diff},
    )
    if isinstance(instance, ServicePoint) and "time_zone" in diff:
        _rebuild_on_commit(instance.pk)
    return instance


def _rebuild_on_commit(service_point_id: int) -> None:
    """Queue the rebuild of a service point whose zone changed: its daily rollups are days of
    its zone (hourly ones are UTC hours and stay). A rebuild is idempotent, so a second zone
    change queueing a second rebuild is harmless."""
    from meters.tasks import rollups_rebuild_task

    transaction.on_commit(lambda: rollups_rebuild_task.delay(service_point_id=service_point_id))
