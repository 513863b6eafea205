"""Signal receivers: authentication events from Django and allauth become audit entries.

This is the only place the project uses signals; each receiver only builds the actor and calls
`auth_event_record`. Django's own signals are used for sign-in, sign-out and failed sign-in so
that every login path (portal, admin, API session) is covered.
"""

from __future__ import annotations

from typing import Any

from allauth.account import signals as account_signals
from allauth.mfa import signals as mfa_signals
from django.contrib.auth import signals as auth_signals
from django.http import HttpRequest
from django.utils import timezone

from portal.audit.actors import RequestContext, SystemActor, UserActor
from portal.audit.events import AuditEvent
from portal.users.models import User
from portal.users.services import auth_event_record, staff_factor_hold

_DISPATCH_PREFIX = "portal.users.receivers."


def _context(request: HttpRequest | None) -> RequestContext:
    return RequestContext.from_request(request) if request is not None else RequestContext()


def _record(
    event: AuditEvent, user: Any, request: HttpRequest | None, data: dict[str, Any] | None = None
) -> None:
    context = _context(request)
    if isinstance(user, User):
        actor: UserActor | SystemActor = UserActor(user=user, context=context)
    else:
        actor = SystemActor("anonymous", context=context)
    auth_event_record(event=event, actor=actor, data=data)


def on_logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    _record(AuditEvent.LOGIN, user, request)


def on_logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:
        _record(AuditEvent.LOGOUT, user, request)


def on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    identifier = str(credentials.get("email") or credentials.get("username") or "")[:254]
    _record(AuditEvent.LOGIN_FAILED, None, request, {"identifier": identifier})


def on_signed_up(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    _record(AuditEvent.SIGNUP, user, request)


def on_password_changed(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    _record(AuditEvent.PASSWORD_CHANGED, user, request)


def on_password_set(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    _record(AuditEvent.PASSWORD_SET, user, request)


def on_password_reset(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    _record(AuditEvent.PASSWORD_RESET, user, request)


def on_email_confirmed(
    sender: Any, request: HttpRequest | None, email_address: Any, **kwargs: Any
) -> None:
    _record(AuditEvent.EMAIL_CONFIRMED, email_address.user, request, {"email": email_address.email})


def on_email_added(
    sender: Any, request: HttpRequest | None, user: Any, email_address: Any, **kwargs: Any
) -> None:
    _record(AuditEvent.EMAIL_ADDED, user, request, {"email": email_address.email})


def on_email_removed(
    sender: Any, request: HttpRequest | None, user: Any, email_address: Any, **kwargs: Any
) -> None:
    _record(AuditEvent.EMAIL_REMOVED, user, request, {"email": email_address.email})


def on_email_changed(
    sender: Any,
    request: HttpRequest | None,
    user: Any,
    from_email_address: Any,
    to_email_address: Any,
    **kwargs: Any,
) -> None:
    _record(
        AuditEvent.EMAIL_PRIMARY_CHANGED,
        user,
        request,
        {
            "email": to_email_address.email,
            "changes": {
                "email": {
                    "before": from_email_address.email if from_email_address else None,
                    "after": to_email_address.email,
                }
            },
        },
    )


def on_authenticator_added(
    sender: Any, request: HttpRequest | None, user: Any, authenticator: Any, **kwargs: Any
) -> None:
    _record(AuditEvent.MFA_AUTHENTICATOR_ADDED, user, request, {"kind": authenticator.type})
    if isinstance(user, User):
        staff_factor_hold(
            user=user,
            authenticator=authenticator,
            actor=UserActor(user=user, context=_context(request)),
            as_of=timezone.now(),
        )


def on_authenticator_removed(
    sender: Any, request: HttpRequest | None, user: Any, authenticator: Any, **kwargs: Any
) -> None:
    _record(AuditEvent.MFA_AUTHENTICATOR_REMOVED, user, request, {"kind": authenticator.type})


def on_authenticator_reset(
    sender: Any, request: HttpRequest | None, user: Any, authenticator: Any, **kwargs: Any
) -> None:
    _record(AuditEvent.MFA_RECOVERY_CODES_RESET, user, request, {"kind": authenticator.type})


def on_mfa_failed(
    sender: Any, request: HttpRequest | None, user: Any, authenticator: Any = None, **kwargs: Any
) -> None:
    kind = authenticator.type if authenticator is not None else "unknown"
    _record(AuditEvent.MFA_FAILED, user, request, {"kind": kind})


def connect() -> None:
    """Connect every receiver once (dispatch_uid guards against double registration)."""
    pairs: list[tuple[Any, Any]] = [
        (auth_signals.user_logged_in, on_logged_in),
        (auth_signals.user_logged_out, on_logged_out),
        (auth_signals.user_login_failed, on_login_failed),
        (account_signals.user_signed_up, on_signed_up),
        (account_signals.password_changed, on_password_changed),
        (account_signals.password_set, on_password_set),
        (account_signals.password_reset, on_password_reset),
        (account_signals.email_confirmed, on_email_confirmed),
        (account_signals.email_added, on_email_added),
        (account_signals.email_removed, on_email_removed),
        (account_signals.email_changed, on_email_changed),
        (mfa_signals.authenticator_added, on_authenticator_added),
        (mfa_signals.authenticator_removed, on_authenticator_removed),
        (mfa_signals.authenticator_reset, on_authenticator_reset),
        (mfa_signals.authentication_failed, on_mfa_failed),
    ]
    for signal, receiver in pairs:
        signal.connect(receiver, dispatch_uid=_DISPATCH_PREFIX + receiver.__name__)
