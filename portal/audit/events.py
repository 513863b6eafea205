"""The registry of audited events.

Values are numbered in ranges per domain and are never reused, even when an event is retired:
stored rows keep their meaning forever. Each event has a stable dotted name (for filters, the
API and exports) and a translatable display template filled from the entry's data.

    1xx  tenancy: organisations, accounts, memberships, invitations, access denials
    15x  users, as changed by staff
    16x  privacy: data exports
    2xx  meters and imports
    3xx  billing and top-ups
    9xx  authentication
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, unique

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from portal.tenancy.roles import Role


@unique
class AuditEvent(IntEnum):
    ORGANISATION_CREATED = 100
    ORGANISATION_UPDATED = 101
    ORGANISATION_MOVED = 102
    ACCOUNT_CREATED = 110
    ACCOUNT_UPDATED = 111
    ACCOUNT_VIEWED_BY_STAFF = 112
    MEMBER_ADDED = 120
    MEMBER_ROLE_CHANGED = 121
    MEMBER_REMOVED = 122
    INVITATION_CREATED = 130
    INVITATION_ACCEPTED = 131
    INVITATION_REVOKED = 132
    INVITATION_EXPIRED = 133
    INVITATION_RESENT = 134
    # Every refusal: a member whose role lacks the scope (403), a signed-in user asking for an
    # account or organisation they are not a member of (404, `reason` "not_member"), an API key
    # without the scope (403, `reason` "api_key").
    ACCESS_DENIED = 140
    API_KEY_CREATED = 145
    API_KEY_REVOKED = 146
    # A member downloaded a table as CSV (accounts of an organisation, an audit log, usage).
    CSV_EXPORTED = 147

    IMPORT_BATCH_CREATED = 200
    IMPORT_BATCH_FINISHED = 201
    IMPORT_BATCH_FAILED = 202
    READING_EDITED = 210
    READING_CONFLICT_RESOLVED = 211
    METER_EVENT_ACKNOWLEDGED = 220
    METER_COMMAND_CREATED = 230
    METER_COMMAND_UPDATED = 231
    SUPPLY_STARTED = 240
    SUPPLY_UPDATED = 241
    FLEET_CREATED = 250
    FLEET_UPDATED = 251
    FLEET_DELETED = 252
    ROLLUPS_REBUILT = 260
    READINGS_CONVERTED = 261

    # 300-319 ledger, wallets and charging; 320-339 top-ups and payments; 340-359 bills;
    # 360-379 warnings and notifications; 380-399 tariffs.
    WALLET_CREATED = 300
    WALLET_UPDATED = 301
    PREPAID_CHARGED = 302
    LEDGER_REVERSED = 303
    WALLET_ADJUSTED = 304
    SUPPLY_DISCONNECT_QUEUED = 305
    SUPPLY_RECONNECT_QUEUED = 306
    # 320-339 top-ups and payments: add members here.
    TOPUP_CREATED = 320
    TOPUP_PENDING = 321
    TOPUP_SUCCEEDED = 322
    TOPUP_FAILED = 323
    TOPUP_UNKNOWN = 324
    TOPUP_REFUNDED = 325
    # 340-359 bills: add members here.
    BILL_RUN_FINISHED = 340
    BILL_CREATED = 341
    BILL_ISSUED = 342
    BILL_PAID = 343
    BILL_VOIDED = 344
    # A member (or staff, in the admin) downloaded a bill's PDF.
    BILL_PDF_DOWNLOADED = 345
    # 360-379 warnings and notifications: add members here.
    SHORTAGE_WARNINGS_RUN = 360
    WARNING_POLICY_SAVED = 361
    WARNING_POLICY_DELETED = 362
    NOTIFICATION_PREFERENCE_SAVED = 363
    BILL_NOTICES_QUEUED = 364
    TARIFF_SAVED = 380
    TARIFF_VERSION_SAVED = 381
    TARIFF_ASSIGNED = 382
    HOLIDAY_SAVED = 383
    HOLIDAY_DELETED = 384

    USER_CREATED = 150
    USER_UPDATED = 151
    USER_STAFF_ACCESS_CHANGED = 152
    USER_DELETED = 153
    USER_VIEWED_BY_STAFF = 154

    # 160-169 privacy: residents' data exports.
    DATA_EXPORT_REQUESTED = 160
    DATA_EXPORT_FINISHED = 161
    DATA_EXPORT_DOWNLOADED = 162

    LOGIN = 900
    LOGIN_FAILED = 901
    LOGOUT = 902
    LOGIN_RATE_LIMITED = 903
    SESSION_EXPIRED = 904
    SIGNUP = 910
    EMAIL_CONFIRMED = 911
    EMAIL_ADDED = 912
    EMAIL_REMOVED = 913
    EMAIL_PRIMARY_CHANGED = 914
    PASSWORD_CHANGED = 920
    PASSWORD_SET = 921
    PASSWORD_RESET = 922
    MFA_AUTHENTICATOR_ADDED = 930
    MFA_AUTHENTICATOR_REMOVED = 931
    MFA_RECOVERY_CODES_RESET = 932
    MFA_FAILED = 933
    STAFF_FACTOR_HELD = 934
    STAFF_FACTOR_CONFIRMED = 935


@dataclass(frozen=True)
class AuditEventSpec:
    api_name: str
    template: str | Promise
    # Other wordings of the same event, chosen by the entry's data["reason"].
    variants: Mapping[str, str | Promise] = field(default_factory=dict)


AUDIT_EVENTS: dict[AuditEvent, AuditEventSpec] = {
    AuditEvent.ORGANISATION_CREATED: AuditEventSpec(
        "organisation.create", _("created organisation {name}")
    ),
    AuditEvent.ORGANISATION_UPDATED: AuditEventSpec(
        "organisation.update", _("changed organisation {name}")
    ),
    AuditEvent.ORGANISATION_MOVED: AuditEventSpec(
        "organisation.move", _("moved organisation {name} under {parent}")
    ),
    AuditEvent.ACCOUNT_CREATED: AuditEventSpec(
        "account.create", _("created account {number} ({name})")
    ),
    AuditEvent.ACCOUNT_UPDATED: AuditEventSpec(
        "account.update", _("changed account {number} ({name})")
    ),
    AuditEvent.ACCOUNT_VIEWED_BY_STAFF: AuditEventSpec(
        "account.staff_view", _("opened the staff record of account {number} ({name})")
    ),
    AuditEvent.MEMBER_ADDED: AuditEventSpec("member.add", _("added {email} as {role}")),
    AuditEvent.MEMBER_ROLE_CHANGED: AuditEventSpec(
        "member.role_change", _("changed the role of {email} from {old_role} to {role}")
    ),
    AuditEvent.MEMBER_REMOVED: AuditEventSpec("member.remove", _("removed {email} ({role})")),
    AuditEvent.INVITATION_CREATED: AuditEventSpec(
        "invitation.create", _("invited {email} as {role}")
    ),
    AuditEvent.INVITATION_ACCEPTED: AuditEventSpec(
        "invitation.accept", _("{email} accepted the invitation as {role}")
    ),
    AuditEvent.INVITATION_REVOKED: AuditEventSpec(
        "invitation.revoke", _("revoked the invitation of {email}")
    ),
    AuditEvent.INVITATION_EXPIRED: AuditEventSpec(
        "invitation.expire", _("the invitation of {email} expired")
    ),
    AuditEvent.INVITATION_RESENT: AuditEventSpec(
        "invitation.resend", _("sent the invitation of {email} again, as {role}")
    ),
    AuditEvent.API_KEY_CREATED: AuditEventSpec(
        "api_key.create", _("created the API key {name} ({prefix})")
    ),
    AuditEvent.API_KEY_REVOKED: AuditEventSpec(
        "api_key.revoke", _("revoked the API key {name} ({prefix})")
    ),
    AuditEvent.ACCESS_DENIED: AuditEventSpec(
        "access.denied",
        _("was refused {path}: the role lacks {scope}"),
        variants={
            "not_member": _("was refused {path}: not a member there (answered as not found)"),
            "api_key": _("was refused {path}: the API key lacks {scope}"),
        },
    ),
    AuditEvent.CSV_EXPORTED: AuditEventSpec("access.export", _("exported {export} as CSV")),
    AuditEvent.IMPORT_BATCH_CREATED: AuditEventSpec(
        "import.create", _("sent import batch {batch} ({format}, {size} bytes)")
    ),
    AuditEvent.IMPORT_BATCH_FINISHED: AuditEventSpec(
        "import.finish",
        _("import batch {batch} finished: {inserted} new readings, {rejected} rejected"),
    ),
    AuditEvent.IMPORT_BATCH_FAILED: AuditEventSpec(
        "import.fail", _("import batch {batch} failed: {error}")
    ),
    AuditEvent.READING_EDITED: AuditEventSpec(
        "reading.edit", _("corrected the reading of {register} at {ts}: {reason}")
    ),
    AuditEvent.READING_CONFLICT_RESOLVED: AuditEventSpec(
        "reading.conflict_resolve", _("resolved the conflicting reading of {register} at {ts}")
    ),
    AuditEvent.METER_EVENT_ACKNOWLEDGED: AuditEventSpec(
        "meter_event.acknowledge", _("acknowledged the {kind} event of meter {meter}")
    ),
    AuditEvent.METER_COMMAND_CREATED: AuditEventSpec(
        "meter_command.create", _("queued the command {command} for meter {meter}: {reason}")
    ),
    AuditEvent.METER_COMMAND_UPDATED: AuditEventSpec(
        "meter_command.update", _("recorded the command {command} of meter {meter} as {status}")
    ),
    AuditEvent.SUPPLY_STARTED: AuditEventSpec(
        "supply.start", _("started the supply at {service_point} from {start}")
    ),
    AuditEvent.SUPPLY_UPDATED: AuditEventSpec(
        "supply.update", _("changed the supply at {service_point}")
    ),
    AuditEvent.FLEET_CREATED: AuditEventSpec("fleet.create", _("created {model} {name}")),
    AuditEvent.FLEET_UPDATED: AuditEventSpec("fleet.update", _("changed {model} {name}")),
    AuditEvent.FLEET_DELETED: AuditEventSpec("fleet.delete", _("deleted {model} {name}")),
    AuditEvent.ROLLUPS_REBUILT: AuditEventSpec(
        "fleet.rollups_rebuild", _("rebuilt the rollups of {service_points} from {first} to {last}")
    ),
    AuditEvent.READINGS_CONVERTED: AuditEventSpec(
        "fleet.readings_convert",
        _("moved {readings} readings of {registers} registers into day rows"),
    ),
    AuditEvent.WALLET_CREATED: AuditEventSpec(
        "wallet.create", _("opened a wallet in {currency} for account {number}")
    ),
    AuditEvent.WALLET_UPDATED: AuditEventSpec(
        "wallet.update", _("set the emergency credit of account {number} to {emergency_credit}")
    ),
    AuditEvent.PREPAID_CHARGED: AuditEventSpec(
        "prepaid.charge", _("charged {charges} prepaid supplies for {day}: {total}")
    ),
    AuditEvent.LEDGER_REVERSED: AuditEventSpec(
        "ledger.reverse", _("reversed ledger entry {entry}: {reason}")
    ),
    AuditEvent.WALLET_ADJUSTED: AuditEventSpec(
        "wallet.adjust", _("adjusted the balance of account {number} by {amount}: {reason}")
    ),
    AuditEvent.SUPPLY_DISCONNECT_QUEUED: AuditEventSpec(
        "supply.disconnect", _("queued disconnection of account {number}: balance {balance}")
    ),
    AuditEvent.SUPPLY_RECONNECT_QUEUED: AuditEventSpec(
        "supply.reconnect", _("queued reconnection of account {number}: balance {balance}")
    ),
    # 320-339 top-ups and payments: add specs here.
    AuditEvent.TOPUP_CREATED: AuditEventSpec(
        "topup.create", _("started a top-up of {amount} for account {number}")
    ),
    AuditEvent.TOPUP_PENDING: AuditEventSpec(
        "topup.pending", _("sent the top-up of {amount} to {provider} for payment")
    ),
    AuditEvent.TOPUP_SUCCEEDED: AuditEventSpec(
        "topup.succeed", _("credited the paid top-up of {amount} to account {number}")
    ),
    AuditEvent.TOPUP_FAILED: AuditEventSpec(
        "topup.fail", _("the top-up of {amount} was not paid: {reason}")
    ),
    AuditEvent.TOPUP_UNKNOWN: AuditEventSpec(
        "topup.unknown", _("{provider} did not answer for the top-up of {amount}; it is rechecked")
    ),
    AuditEvent.TOPUP_REFUNDED: AuditEventSpec(
        "topup.refund", _("refunded {amount} of the top-up of {paid}: {reason}")
    ),
    # 340-359 bills: add specs here.
    AuditEvent.BILL_RUN_FINISHED: AuditEventSpec(
        "bill_run.finish",
        _("bill run {period} issued {bills} bills ({skipped} accounts skipped)"),
    ),
    AuditEvent.BILL_CREATED: AuditEventSpec(
        "bill.create", _("drafted the bill of account {number} for {period}: {total}")
    ),
    AuditEvent.BILL_ISSUED: AuditEventSpec(
        "bill.issue", _("issued bill {bill} of account {number}: {total}")
    ),
    AuditEvent.BILL_PAID: AuditEventSpec(
        "bill.pay", _("recorded the payment of bill {bill} of account {number}")
    ),
    AuditEvent.BILL_VOIDED: AuditEventSpec(
        "bill.void",
        _("voided bill {bill} of account {number} by credit note {credit_note}: {reason}"),
    ),
    AuditEvent.BILL_PDF_DOWNLOADED: AuditEventSpec(
        "bill.pdf_download", _("downloaded the PDF of bill {bill} of account {number}")
    ),
    # 360-379 warnings and notifications: add specs here.
    AuditEvent.SHORTAGE_WARNINGS_RUN: AuditEventSpec(
        "shortage.warn",
        _("warned {accounts} accounts of low credit ({warnings} new, {escalations} escalated)"),
    ),
    AuditEvent.WARNING_POLICY_SAVED: AuditEventSpec(
        "warning_policy.save", _("set the low-credit warnings of {tenant} to {thresholds} days")
    ),
    AuditEvent.WARNING_POLICY_DELETED: AuditEventSpec(
        "warning_policy.delete", _("removed the low-credit warning policy of {tenant}")
    ),
    AuditEvent.NOTIFICATION_PREFERENCE_SAVED: AuditEventSpec(
        "notification_preference.save", _("changed the notification preferences for {topic}")
    ),
    AuditEvent.BILL_NOTICES_QUEUED: AuditEventSpec(
        "bill_notice.queue", _("queued {notices} bill notices for {bills} bills")
    ),
    AuditEvent.TARIFF_SAVED: AuditEventSpec("tariff.save", _("saved tariff {name}")),
    AuditEvent.TARIFF_VERSION_SAVED: AuditEventSpec(
        "tariff.version_save", _("saved the prices of tariff {name} from {valid_from}")
    ),
    AuditEvent.TARIFF_ASSIGNED: AuditEventSpec(
        "tariff.assign", _("assigned tariff {name} to account {number} from {valid_from}")
    ),
    AuditEvent.HOLIDAY_SAVED: AuditEventSpec("holiday.save", _("saved public holiday {day}")),
    AuditEvent.HOLIDAY_DELETED: AuditEventSpec("holiday.delete", _("deleted public holiday {day}")),
    AuditEvent.USER_CREATED: AuditEventSpec("user.create", _("created user {email}")),
    AuditEvent.USER_UPDATED: AuditEventSpec("user.update", _("changed user {email}")),
    AuditEvent.USER_STAFF_ACCESS_CHANGED: AuditEventSpec(
        "user.staff_access", _("changed the staff access of {email}")
    ),
    AuditEvent.USER_DELETED: AuditEventSpec("user.delete", _("deleted user {email}")),
    AuditEvent.USER_VIEWED_BY_STAFF: AuditEventSpec(
        "user.staff_view", _("opened the staff record of user {email}")
    ),
    AuditEvent.DATA_EXPORT_REQUESTED: AuditEventSpec(
        "data_export.request", _("asked for an export of all data of account {number}")
    ),
    AuditEvent.DATA_EXPORT_FINISHED: AuditEventSpec(
        "data_export.finish", _("the data export of account {number} ended: {outcome}")
    ),
    AuditEvent.DATA_EXPORT_DOWNLOADED: AuditEventSpec(
        "data_export.download", _("downloaded the data export of account {number}")
    ),
    AuditEvent.LOGIN: AuditEventSpec("auth.login", _("signed in")),
    AuditEvent.LOGIN_FAILED: AuditEventSpec(
        "auth.login_failed", _("failed to sign in as {identifier}")
    ),
    AuditEvent.LOGOUT: AuditEventSpec("auth.logout", _("signed out")),
    AuditEvent.LOGIN_RATE_LIMITED: AuditEventSpec(
        "auth.login_rate_limited", _("was refused sign-in as {identifier}: too many attempts")
    ),
    AuditEvent.SESSION_EXPIRED: AuditEventSpec(
        "auth.session_expired", _("was signed out: the session {reason} limit passed")
    ),
    AuditEvent.SIGNUP: AuditEventSpec("auth.signup", _("signed up")),
    AuditEvent.EMAIL_CONFIRMED: AuditEventSpec(
        "auth.email_confirm", _("confirmed the email address {email}")
    ),
    AuditEvent.EMAIL_ADDED: AuditEventSpec("auth.email_add", _("added the email address {email}")),
    AuditEvent.EMAIL_REMOVED: AuditEventSpec(
        "auth.email_remove", _("removed the email address {email}")
    ),
    AuditEvent.EMAIL_PRIMARY_CHANGED: AuditEventSpec(
        "auth.email_primary", _("made {email} the primary email address")
    ),
    AuditEvent.PASSWORD_CHANGED: AuditEventSpec("auth.password_change", _("changed the password")),
    AuditEvent.PASSWORD_SET: AuditEventSpec("auth.password_set", _("set a password")),
    AuditEvent.PASSWORD_RESET: AuditEventSpec(
        "auth.password_reset", _("reset the password by email")
    ),
    AuditEvent.MFA_AUTHENTICATOR_ADDED: AuditEventSpec(
        "auth.mfa_add", _("added a second factor ({kind})")
    ),
    AuditEvent.MFA_AUTHENTICATOR_REMOVED: AuditEventSpec(
        "auth.mfa_remove", _("removed a second factor ({kind})")
    ),
    AuditEvent.MFA_RECOVERY_CODES_RESET: AuditEventSpec(
        "auth.mfa_recovery_reset", _("generated new recovery codes")
    ),
    AuditEvent.MFA_FAILED: AuditEventSpec(
        "auth.mfa_failed", _("entered a wrong second-factor code ({kind})")
    ),
    AuditEvent.STAFF_FACTOR_HELD: AuditEventSpec(
        "auth.staff_factor_held",
        _("added a first second factor as staff ({kind}); it counts once confirmed by email"),
    ),
    AuditEvent.STAFF_FACTOR_CONFIRMED: AuditEventSpec(
        "auth.staff_factor_confirmed", _("confirmed a staff second factor by email ({kind})")
    ),
}

EVENTS_BY_API_NAME: dict[str, AuditEvent] = {
    spec.api_name: event for event, spec in AUDIT_EVENTS.items()
}

DOMAIN_RANGES: dict[str, range] = {
    "tenancy": range(100, 150),
    "users": range(150, 160),
    "privacy": range(160, 170),
    "meters": range(200, 300),
    "billing": range(300, 400),
    "auth": range(900, 1000),
}


class _KeepMissing(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def event_display(event_type: int, data: dict[str, object] | None) -> str:
    """Render an entry's human text from its event template and data, in the active language."""
    try:
        spec = AUDIT_EVENTS[AuditEvent(event_type)]
    except ValueError:
        return f"event {event_type}"
    template = spec.variants.get(str((data or {}).get("reason", "")), spec.template)
    values = _KeepMissing()
    for key, value in (data or {}).items():
        # before/after pairs show their new value in the sentence.
        shown = value["after"] if isinstance(value, dict) and "after" in value else value
        if key in _ROLE_KEYS and isinstance(shown, str):
            shown = Role.label_for_name(shown)
        elif key in _VALUE_LABELS and isinstance(shown, str):
            shown = str(_VALUE_LABELS[key].get(shown, shown))
        elif isinstance(shown, str):
            shown = _STORED_MONEY.sub(_money_shown, shown)
        values[key] = shown
    return str(template).format_map(values)


# Amounts are stored exactly as portal.lib.money.format_minor writes them ("1000.00 TWD"); the
# sentence shows them as every page writes money: grouped by three (1,000.00 TWD).
_STORED_MONEY = re.compile(r"(?<![\w.,-])(-?)([1-9]\d{3,})(\.\d+)? ([A-Z]{3})\b")


def _money_shown(match: re.Match[str]) -> str:
    sign, units, decimals, currency = match.groups()
    return f"{sign}{int(units):,}{decimals or ''} {currency}"


_ROLE_KEYS = frozenset({"role", "old_role"})
# Stored codes shown in the sentence in the reader's language.
_VALUE_LABELS: dict[str, dict[str, str | Promise]] = {
    "export": {
        "organisation_accounts": _("the accounts table"),
        "audit_log": _("the audit log"),
        "usage": _("the consumption table"),
    },
    "reason": {"idle": _("idle"), "absolute": _("absolute")},
    "outcome": {"done": _("ready to download"), "failed": _("failed")},
    "kind": {
        "totp": _("authenticator app"),
        "recovery_codes": _("recovery codes"),
        "webauthn": _("security key"),
    },
}
