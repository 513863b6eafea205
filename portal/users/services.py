"""Writes about users: staff changes in the admin and the audit of authentication events."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils.translation import gettext as _

from portal.audit.actors import Actor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.changes import apply_changes
from portal.lib.errors import DomainError
from portal.users.models import StaffFactorApproval, User
from portal.users.selectors import FACTOR_TYPES, staff_factor_confirmed

_PROFILE_FIELDS = frozenset({"email", "name", "is_active"})
_STAFF_FIELDS = frozenset({"is_staff", "is_superuser"})


@transaction.atomic
def user_create(
    *,
    email: str,
    actor: Actor,
    password: str | None = None,
    name: str = "",
    is_staff: bool = False,
    is_superuser: bool = False,
    groups: Iterable[Group] = (),
    email_verified: bool = False,
) -> User:
    """Create a user (staff in the admin, or the demo seed); without a password none is usable.

    With `email_verified` the address is recorded as verified, as when staff create a user
    whose address they have checked.
    """
    from allauth.account.models import EmailAddress

    user = User(
        email=User.objects.normalize_email(email).lower(),
        name=name,
        is_staff=is_staff,
        is_superuser=is_superuser,
    )
    user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save(force_insert=True)
    group_names = sorted(g.name for g in groups)
    if group_names:
        user.groups.set(list(groups))
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=email_verified)
    audit_record(
        actor=actor,
        event=AuditEvent.USER_CREATED,
        target=user,
        data={
            "email": user.email,
            "is_staff": is_staff,
            "is_superuser": is_superuser,
            "groups": group_names,
        },
    )
    return user


@transaction.atomic
def user_update(
    *,
    user: User,
    actor: Actor,
    changes: Mapping[str, Any],
    groups: Iterable[Group] | None = None,
) -> User:
    """Change a user's profile or staff access; one audit entry covers the whole change.

    Changes to `is_staff`, `is_superuser` or the staff groups are recorded as a staff-access
    change, so that the auditor can filter for them.
    """
    diff: dict[str, Any] = apply_changes(user, changes, allowed=_PROFILE_FIELDS | _STAFF_FIELDS)
    if "email" in diff:
        user.email = User.objects.normalize_email(user.email).lower()
        diff["email"]["after"] = user.email
    if diff:
        user.full_clean(exclude=["password"])
        user.save(update_fields=list(diff))
        if "email" in diff:
            _sync_primary_email(user)
    if groups is not None:
        before_groups = sorted(user.groups.values_list("name", flat=True))
        after = list(groups)
        after_groups = sorted(g.name for g in after)
        if before_groups != after_groups:
            user.groups.set(after)
            diff["groups"] = {"before": before_groups, "after": after_groups}
    if not diff:
        return user
    staff_change = bool(set(diff) & (_STAFF_FIELDS | {"groups"}))
    audit_record(
        actor=actor,
        event=AuditEvent.USER_STAFF_ACCESS_CHANGED if staff_change else AuditEvent.USER_UPDATED,
        target=user,
        data={"email": user.email, "changes": diff},
    )
    return user


@transaction.atomic
def user_staff_view_record(*, user: User, actor: Actor) -> None:
    """Audit a member of staff opening a person's record (their personal data)."""
    audit_record(
        actor=actor, event=AuditEvent.USER_VIEWED_BY_STAFF, target=user, data={"email": user.email}
    )


def _sync_primary_email(user: User) -> None:
    # Staff changed the address: it replaces every other one (the old address must no longer
    # sign in or receive password resets), and the person confirms it at the next sign-in.
    from allauth.account.models import EmailAddress

    EmailAddress.objects.filter(user=user).exclude(email__iexact=user.email).delete()
    address, _ = EmailAddress.objects.get_or_create(
        user=user, email=user.email, defaults={"primary": True, "verified": False}
    )
    if not address.primary:
        address.primary = True
        address.save(update_fields=["primary"])


@transaction.atomic
def auth_event_record(
    *,
    event: AuditEvent,
    actor: Actor,
    data: dict[str, Any] | None = None,
) -> None:
    """Audit an authentication event reported by Django or allauth (sign-in, MFA, password)."""
    target = actor.user if hasattr(actor, "user") else None
    audit_record(actor=actor, event=event, target=target, data=data)


class StaffFactorInvalid(DomainError):
    """The confirmation link is unknown, used, or another person's."""


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def staff_factor_hold(
    *, user: User, authenticator: Authenticator, actor: Actor, as_of: dt.datetime
) -> bool:
    """Hold a staff member's first second factor until it is confirmed by email; return
    whether it was held.

    Only staff, and only when they have no confirmed factor yet: a second factor added by
    someone who already passed one is as good as the one they passed.
    """
    if not user.is_staff or authenticator.type not in FACTOR_TYPES:
        return False
    if staff_factor_confirmed(user=user, besides=authenticator):
        return False
    token = secrets.token_urlsafe(32)
    StaffFactorApproval.objects.create(
        user=user, authenticator=authenticator, token_hash=_token_hash(token), created_at=as_of
    )
    audit_record(
        actor=actor,
        event=AuditEvent.STAFF_FACTOR_HELD,
        target=user,
        data={"kind": authenticator.type},
    )
    link = settings.PORTAL_BASE_URL.rstrip("/") + reverse(
        "users:staff_factor_confirm", kwargs={"token": token}
    )
    subject = _("Confirm your new second factor")
    body = _(
        "A second factor (%(kind)s) was added to your staff login %(email)s. It opens the admin "
        "only after you confirm it here, signed in as yourself:\n\n%(link)s\n\nIf you did not "
        "add it, do not open the link: tell your security team at once, your password is known "
        "to someone else."
    ) % {"kind": authenticator.type, "email": user.email, "link": link}
    transaction.on_commit(lambda: send_mail(subject, body, None, [user.email]))
    return True


@transaction.atomic
def staff_factor_confirm(*, token: str, user: User, actor: Actor, as_of: dt.datetime) -> None:
    """Confirm a held staff factor from its emailed link, opened by its own user.

    :raises StaffFactorInvalid: for an unknown or used token, or another user's.
    """
    approval = (
        StaffFactorApproval.objects.select_for_update()
        .select_related("authenticator")
        .filter(token_hash=_token_hash(token), confirmed_at__isnull=True)
        .first()
    )
    if approval is None or approval.user_id != user.pk:
        raise StaffFactorInvalid(_("This confirmation link is not valid for you."))
    approval.confirmed_at = as_of
    approval.save(update_fields=["confirmed_at"])
    audit_record(
        actor=actor,
        event=AuditEvent.STAFF_FACTOR_CONFIRMED,
        target=user,
        data={"kind": approval.authenticator.type},
    )
