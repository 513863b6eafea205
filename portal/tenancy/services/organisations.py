"""Writes for organisations: create, update and move within the tree; each one audited."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat, Substr

from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.changes import apply_changes
from portal.lib.timezones import default_time_zone
from portal.tenancy.exceptions import (
    OrganisationTooDeep,
    OrganisationTreeError,
)
from portal.tenancy.models import (
    MAX_ORGANISATION_DEPTH,
    Organisation,
)
from portal.tenancy.services._common import _audit_value, _lock_tree, _next_id


@transaction.atomic
def organisation_create(
    *,
    name: str,
    actor: Actor,
    parent: Organisation | None = None,
    require_mfa: bool = False,
    time_zone: str | None = None,
) -> Organisation:
    """Create an organisation at the top or beneath `parent`.

    Without `time_zone` it takes its parent's zone (a subsidiary is usually where its group
    is), or the site's at the top.

    :raises OrganisationTooDeep: beyond MAX_ORGANISATION_DEPTH levels.
    """
    _lock_tree()
    if parent is not None:
        parent.refresh_from_db()
    depth = parent.depth + 1 if parent is not None else 0
    if depth >= MAX_ORGANISATION_DEPTH:
        raise OrganisationTooDeep
    new_id = _next_id("tenancy_organisation")
    organisation = Organisation(
        id=new_id,
        name=name,
        parent=parent,
        path=f"{parent.path if parent else '/'}{new_id}/",
        depth=depth,
        require_mfa=require_mfa,
        time_zone=time_zone or (parent.time_zone if parent else default_time_zone()),
    )
    organisation.full_clean()
    organisation.save(force_insert=True)
    audit_record(
        actor=actor,
        event=AuditEvent.ORGANISATION_CREATED,
        organisation=organisation,
        target=organisation,
        data={"name": name, "parent": parent.name if parent else None},
    )
    return organisation


@transaction.atomic
def organisation_update(
    *, organisation: Organisation, changes: Mapping[str, Any], actor: Actor
) -> Organisation:
    """Change an organisation's name, MFA requirement or time zone; moving it is
    organisation_move."""
    diff = apply_changes(
        organisation,
        changes,
        allowed={"name", "require_mfa", "time_zone"},
        describe=_audit_value,
    )
    if not diff:
        return organisation
    organisation.full_clean()
    organisation.save(update_fields=list(diff))
    audit_record(
        actor=actor,
        event=AuditEvent.ORGANISATION_UPDATED,
        organisation=organisation,
        target=organisation,
        data={"name": organisation.name, "changes": diff},
    )
    return organisation


@transaction.atomic
def organisation_move(
    *, organisation: Organisation, parent: Organisation | None, actor: Actor
) -> Organisation:
    """Place an organisation (and its subtree) under another parent, or at the top.

    :raises OrganisationTreeError: if `parent` is the organisation or one of its descendants.
    :raises OrganisationTooDeep: if the subtree would exceed MAX_ORGANISATION_DEPTH.
    """
    _lock_tree()
    subtree = list(
        Organisation.objects.select_for_update().filter(path__startswith=organisation.path)
    )
    organisation.refresh_from_db()
    if parent is not None:
        parent.refresh_from_db()
        if parent.path.startswith(organisation.path):
            raise OrganisationTreeError
    if organisation.parent_id == (parent.pk if parent else None):
        return organisation
    old_path = organisation.path
    new_path = f"{parent.path if parent else '/'}{organisation.pk}/"
    new_depth = parent.depth + 1 if parent else 0
    delta = new_depth - organisation.depth
    if max(o.depth for o in subtree) + delta >= MAX_ORGANISATION_DEPTH:
        raise OrganisationTooDeep
    old_parent = organisation.parent
    Organisation.objects.filter(path__startswith=old_path).update(
        path=Concat(Value(new_path), Substr("path", len(old_path) + 1)),
        depth=F("depth") + delta,
    )
    Organisation.objects.filter(pk=organisation.pk).update(parent=parent)
    organisation.refresh_from_db()
    audit_record(
        actor=actor,
        event=AuditEvent.ORGANISATION_MOVED,
        organisation=organisation,
        target=organisation,
        data={
            "name": organisation.name,
            "parent": parent.name if parent else "-",
            "changes": {
                "parent": {
                    "before": old_parent.name if old_parent else None,
                    "after": parent.name if parent else None,
                }
            },
        },
    )
    return organisation
