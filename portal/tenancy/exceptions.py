"""Domain errors of tenancy. Each carries a message fit to show the person who caused it."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from portal.lib.errors import DomainError


class TenancyError(DomainError):
    """Base class of tenancy's refusals."""


class LastOwnerError(TenancyError):
    default_message = _(
        "This is the last owner. Make someone else an owner before removing or demoting them."
    )


class MemberManagementDenied(TenancyError):
    default_message = _("Your role does not allow this change to members.")


class AlreadyMember(TenancyError):
    default_message = _("This person is already a member.")


class InvitationInvalid(TenancyError):
    default_message = _("This invitation link is not valid.")


class InvitationExpired(TenancyError):
    default_message = _("This invitation has expired. Ask for a new one.")


class InvitationNotPending(TenancyError):
    default_message = _("This invitation has already been used or was withdrawn.")


class InvitationInviterLostAuthority(TenancyError):
    default_message = _(
        "The person who invited you may no longer give this role. Ask for a new invitation."
    )


class InvitationEmailMismatch(TenancyError):
    default_message = _(
        "This invitation was sent to a different email address. Sign in with that address."
    )


class OrganisationTreeError(TenancyError):
    default_message = _("An organisation cannot be placed under itself or its own subsidiaries.")


class OrganisationTooDeep(TenancyError):
    default_message = _("The organisation tree would become too deep.")


class ApiKeyManagementDenied(TenancyError):
    default_message = _("Your role does not allow managing this organisation's API keys.")


class ApiKeyRevoked(TenancyError):
    default_message = _("This API key has already been revoked.")
