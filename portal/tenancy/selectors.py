"""Reads: who may see which accounts and organisations, with which scopes."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import Count, F, Func, OuterRef, Q, QuerySet, Subquery
from django.urls import reverse

from portal.tenancy.exceptions import InvitationInvalid
from portal.tenancy.models import (
    Account,
    Invitation,
    Membership,
    Organisation,
    OrganisationAPIKey,
)
from portal.tenancy.roles import Role
from portal.tenancy.scopes import API_KEY_SCOPES, Scope, scopes_for
from portal.tenancy.tokens import (
    api_key_matches,
    invitation_mac_matches,
    invitation_token,
    parse_api_key,
    parse_invitation_token,
)

if TYPE_CHECKING:
    from portal.users.models import User


@dataclass(frozen=True)
class TenantAccess:
    """A user's effective role on one tenant, and the membership that grants it.

    Memberships on an organisation cascade to its whole subtree; when several apply, the most
    powerful role wins.
    """

    role: Role
    membership: Membership
    inherited: bool

    @property
    def scopes(self) -> frozenset[Scope]:
        return scopes_for(self.role)

    def has_scope(self, scope: Scope) -> bool:
        return scope in self.scopes


@dataclass(frozen=True)
class AccountAccess(TenantAccess):
    account: Account = field(kw_only=True)


@dataclass(frozen=True)
class OrganisationAccess(TenantAccess):
    organisation: Organisation = field(kw_only=True)


def _strongest(memberships: list[Membership]) -> Membership | None:
    # Lowest role number is the most powerful; ties go to the direct (account) membership.
    if not memberships:
        return None
    return min(memberships, key=lambda m: (m.role, m.account_id is None))


def account_access_for(*, user: User, account_public_id: uuid.UUID) -> AccountAccess | None:
    """Return the user's access to the account, or None if the user is not a member."""
    if not user.is_active:
        return None
    account = (
        Account.objects.select_related("organisation").filter(public_id=account_public_id).first()
    )
    if account is None:
        return None
    return account_access_for_account(user=user, account=account)


def account_access_for_account(*, user: User, account: Account) -> AccountAccess | None:
    """Return the user's access to an already loaded account."""
    if not user.is_active:
        return None
    condition = Q(account=account)
    if account.organisation is not None:
        condition |= Q(organisation_id__in=account.organisation.ancestor_ids)
    membership = _strongest(list(Membership.objects.filter(condition, user_id=user.pk)))
    if membership is None:
        return None
    return AccountAccess(
        role=Role(membership.role),
        membership=membership,
        inherited=membership.account_id is None,
        account=account,
    )


def organisation_access_for(
    *, user: User, organisation_public_id: uuid.UUID
) -> OrganisationAccess | None:
    """Return the user's access to the organisation (through it or an ancestor), or None."""
    if not user.is_active:
        return None
    organisation = Organisation.objects.filter(public_id=organisation_public_id).first()
    if organisation is None:
        return None
    membership = _strongest(
        list(
            Membership.objects.filter(
                user_id=user.pk, organisation_id__in=organisation.ancestor_ids
            )
        )
    )
    if membership is None:
        return None
    return OrganisationAccess(
        role=Role(membership.role),
        membership=membership,
        inherited=membership.organisation_id != organisation.pk,
        organisation=organisation,
    )


@dataclass(frozen=True)
class VisibleOrganisation:
    organisation: Organisation
    role: Role
    account_count: int

    @property
    def scopes(self) -> frozenset[Scope]:
        """What the role allows on the organisation and on every account beneath it."""
        return scopes_for(self.role)


@dataclass(frozen=True)
class VisibleAccount:
    account: Account
    role: Role

    @property
    def scopes(self) -> frozenset[Scope]:
        return scopes_for(self.role)


@dataclass(frozen=True)
class VisibleTenants:
    """Which organisations and accounts a person can see, with which role and scopes.

    Organisations come with the number of open accounts in their subtree; accounts reached
    only through an organisation are listed on that organisation's pages, so that a group
    manager's list stays short however many accounts the group has.
    """

    organisations: list[VisibleOrganisation]
    accounts: list[VisibleAccount]

    @property
    def is_empty(self) -> bool:
        return not self.organisations and not self.accounts


def tenants_visible_to(*, user: User) -> VisibleTenants:
    """Return the organisations and accounts the person holds memberships on (two queries)."""
    # The subtree count rides along as a correlated subquery: one query for every organisation.
    memberships = (
        Membership.objects.filter(user_id=user.pk)
        .select_related("account", "organisation")
        .annotate(
            account_count=Subquery(
                Account.objects.filter(
                    organisation__path__startswith=OuterRef("organisation__path"),
                    closed_at__isnull=True,
                )
                .order_by()
                .annotate(n=Func(F("id"), function="COUNT"))
                .values("n")[:1]
            )
        )
    )
    organisations: list[VisibleOrganisation] = []
    accounts: list[VisibleAccount] = []
    for membership in memberships:
        if membership.organisation is not None:
            organisations.append(
                VisibleOrganisation(
                    organisation=membership.organisation,
                    role=Role(membership.role),
                    account_count=membership.account_count or 0,  # type: ignore[attr-defined]
                )
            )
        elif membership.account is not None:
            accounts.append(VisibleAccount(account=membership.account, role=Role(membership.role)))
    organisations.sort(key=lambda item: item.organisation.path)
    accounts.sort(key=lambda item: item.account.number)
    return VisibleTenants(organisations=organisations, accounts=accounts)


def organisation_children(*, organisation: Organisation) -> QuerySet[Organisation]:
    """Return the direct subsidiaries with their counts of direct accounts and sub-subsidiaries."""
    return (
        Organisation.objects.filter(parent=organisation)
        .annotate(
            account_count=Count(
                "accounts", filter=Q(accounts__closed_at__isnull=True), distinct=True
            ),
            child_count=Count("children", distinct=True),
        )
        .order_by("name")
    )


def organisation_accounts(*, organisation: Organisation) -> QuerySet[Account]:
    """Return the organisation's own accounts (not its subsidiaries'), by number."""
    return Account.objects.filter(organisation=organisation).order_by("number")


def accounts_in_subtree(
    *, organisation: Organisation, withheld: Sequence[str] = ()
) -> QuerySet[Account]:
    """Return the accounts of the organisation and of every subsidiary beneath it, except those
    beneath the `withheld` organisation paths (see `mfa_withheld_paths`)."""
    found = Account.objects.in_subtree(organisation)
    for path in withheld:
        found = found.exclude(organisation__path__startswith=path)
    return found.select_related("organisation")


def organisation_ancestors(*, organisation: Organisation) -> list[Organisation]:
    """Return the organisations above this one, root first."""
    ids = organisation.ancestor_ids[:-1]
    by_id = Organisation.objects.in_bulk(ids)
    return [by_id[i] for i in ids if i in by_id]


def organisation_subtree_ids(
    *, organisation: Organisation, withheld: Sequence[str] = ()
) -> list[int]:
    """Return the ids of the organisation and all its descendants, except those beneath the
    `withheld` organisation paths."""
    found = Organisation.objects.subtree_of(organisation)
    for path in withheld:
        found = found.exclude(path__startswith=path)
    return list(found.values_list("id", flat=True))


def organisations_requiring_mfa_below(*, organisation: Organisation) -> list[Organisation]:
    """The organisations strictly beneath this one that ask their owners and managers for
    two-factor authentication, topmost first."""
    return list(
        Organisation.objects.subtree_of(organisation)
        .exclude(pk=organisation.pk)
        .filter(require_mfa=True)
        .order_by("depth", "path")
    )


def account_ancestors(*, account: Account) -> list[Organisation]:
    """Return the organisations above an account, root first (empty for a household)."""
    if account.organisation is None:
        return []
    ids = account.organisation.ancestor_ids
    by_id = Organisation.objects.in_bulk(ids)
    return [by_id[i] for i in ids if i in by_id]


def organisations_reached(*, user: User, organisations: list[Organisation]) -> set[int]:
    """Return the ids of those organisations that one of the user's memberships reaches (held
    on the organisation itself or on one above it): the ones whose pages the user may open."""
    above = {i for organisation in organisations for i in organisation.ancestor_ids}
    held = set(
        Membership.objects.filter(user_id=user.pk, organisation_id__in=above).values_list(
            "organisation_id", flat=True
        )
    )
    return {o.pk for o in organisations if held.intersection(o.ancestor_ids)}


def account_members(*, account: Account) -> QuerySet[Membership]:
    """Return the memberships held directly on the account."""
    return (
        Membership.objects.for_account(account)
        .select_related("user")
        .order_by("role", "user__email")
    )


def account_inherited_members(*, account: Account) -> QuerySet[Membership]:
    """Return the organisation memberships that reach the account through its organisation."""
    if account.organisation is None:
        return Membership.objects.none()
    return (
        Membership.objects.filter(organisation_id__in=account.organisation.ancestor_ids)
        .select_related("user", "organisation")
        .order_by("organisation__depth", "role", "user__email")
    )


def organisation_members(*, organisation: Organisation) -> QuerySet[Membership]:
    """Return the memberships held directly on the organisation."""
    return (
        Membership.objects.for_organisation(organisation)
        .select_related("user")
        .order_by("role", "user__email")
    )


def organisation_inherited_members(*, organisation: Organisation) -> QuerySet[Membership]:
    """Return the memberships on the organisations above this one (they reach it too)."""
    return (
        Membership.objects.filter(organisation_id__in=organisation.ancestor_ids[:-1])
        .select_related("user", "organisation")
        .order_by("organisation__depth", "role", "user__email")
    )


def account_membership_get(*, account: Account, public_id: uuid.UUID) -> Membership | None:
    """Return a membership of this account by its public id, never another tenant's."""
    return (
        Membership.objects.for_account(account)
        .select_related("user")
        .filter(public_id=public_id)
        .first()
    )


def organisation_membership_get(
    *, organisation: Organisation, public_id: uuid.UUID
) -> Membership | None:
    """Return a membership of this organisation by its public id, never another tenant's."""
    return (
        Membership.objects.for_organisation(organisation)
        .select_related("user")
        .filter(public_id=public_id)
        .first()
    )


def pending_invitations(
    *, account: Account | None = None, organisation: Organisation | None = None
) -> QuerySet[Invitation]:
    """Return a tenant's invitations that were neither accepted nor revoked."""
    qs = Invitation.objects.pending().select_related("invited_by").order_by("-created_at")
    if account is not None:
        return qs.filter(account=account)
    if organisation is not None:
        return qs.filter(organisation=organisation)
    return qs.none()


def invitation_get(
    *,
    public_id: uuid.UUID,
    account: Account | None = None,
    organisation: Organisation | None = None,
) -> Invitation | None:
    """Return a pending invitation of this tenant by its public id."""
    return (
        pending_invitations(account=account, organisation=organisation)
        .filter(public_id=public_id)
        .first()
    )


def invitation_get_by_id(*, invitation_id: int) -> Invitation | None:
    """Return an invitation by its primary key (for tasks)."""
    return (
        Invitation.objects.select_related("account", "organisation", "invited_by")
        .filter(pk=invitation_id)
        .first()
    )


def invitation_by_public_id(*, public_id: uuid.UUID) -> Invitation | None:
    """Return an invitation by its public id, whatever its state (the token is checked apart)."""
    return (
        Invitation.objects.select_related("account", "organisation", "invited_by")
        .filter(public_id=public_id)
        .first()
    )


def invitation_link(*, invitation: Invitation) -> str:
    """Return the path of the invitation's acceptance page."""
    token = invitation_token(public_id=invitation.public_id, nonce=invitation.nonce)
    return reverse("tenancy:invitation_accept", kwargs={"token": token})


def invitation_from_token(*, token: str) -> Invitation:
    """Return the invitation a link token belongs to, whatever its state.

    :raises InvitationInvalid: if the token is malformed or forged.
    """
    parsed = parse_invitation_token(token)
    if parsed is None:
        raise InvitationInvalid
    public_id, mac = parsed
    invitation = (
        Invitation.objects.select_related("account", "organisation", "invited_by")
        .filter(public_id=public_id)
        .first()
    )
    if invitation is None or not invitation_mac_matches(
        public_id=public_id, nonce=invitation.nonce, mac=mac
    ):
        raise InvitationInvalid
    return invitation


# --- API keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKeyAccess:
    """What a request signed with an organisation's API key may reach: that organisation's
    subtree, with the fixed scopes of machine access."""

    api_key: OrganisationAPIKey
    organisation: Organisation

    @property
    def scopes(self) -> frozenset[Scope]:
        return API_KEY_SCOPES

    def has_scope(self, scope: Scope) -> bool:
        return scope in self.scopes


def api_key_access(*, key: str, as_of: dt.datetime) -> ApiKeyAccess | None:
    """Return the access a presented key grants; None for unknown, revoked or expired keys."""
    prefix = parse_api_key(key)
    if prefix is None:
        return None
    api_key = (
        OrganisationAPIKey.objects.select_related("organisation")
        .filter(prefix=prefix, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=as_of))
        .first()
    )
    if api_key is None or not api_key_matches(key, api_key.hashed_key):
        return None
    return ApiKeyAccess(api_key=api_key, organisation=api_key.organisation)


def organisation_api_keys(*, organisation: Organisation) -> QuerySet[OrganisationAPIKey]:
    """Return the organisation's own keys (not its subsidiaries'), newest first."""
    return (
        OrganisationAPIKey.objects.filter(organisation=organisation)
        .select_related("created_by")
        .order_by("-created_at")
    )


def organisation_api_key_get(
    *, organisation: Organisation, public_id: uuid.UUID
) -> OrganisationAPIKey | None:
    return organisation_api_keys(organisation=organisation).filter(public_id=public_id).first()


# --- Who is told about an account ---------------------------------------------------------


class Audience(StrEnum):
    """Whom a message about an account goes to (the one rule; see MEMBERS_TO_NOTIFY_SQL)."""

    ACCOUNT = "account"
    ESCALATION = "escalation"
    EVERYONE = "everyone"


# Input: a relation `targets(key, account_id, audience)`; output rows
# (key, account_id, user_id, role), one per person, with their highest role on the way.
#
# ACCOUNT, the account's own people (shortage warnings, bill notices):
#   - members of the account who may top up or pay it (payer, manager, owner; viewers only
#     look), and
#   - the managers and owners of the account's own organisation (a subsidiary manages its
#     own accounts).
# ESCALATION, one level up: the managers and owners of the organisation directly above the
# account's organisation (a group's managers for a subsidiary's account). Nobody further up;
# a household (no organisation) or a top-level organisation's account has none.
# EVERYONE (meter alarms): every member of the account and of its organisation and each one
# above it, any role; the caller decides what a viewer hears.
# Members of siblings never appear: memberships are matched by exact organisation id.
MEMBERS_TO_NOTIFY_SQL = f"""
    SELECT key, account_id, user_id, min(role) AS role FROM (
        SELECT t.key, t.account_id, m.user_id, m.role
        FROM targets t
        JOIN tenancy_membership m ON m.account_id = t.account_id
        WHERE t.audience = '{Audience.ACCOUNT}' AND m.role <= {int(Role.PAYER)}
           OR t.audience = '{Audience.EVERYONE}'
        UNION ALL
        SELECT t.key, t.account_id, m.user_id, m.role
        FROM targets t
        JOIN tenancy_account a ON a.id = t.account_id
        JOIN tenancy_membership m ON m.organisation_id = a.organisation_id
             AND m.role <= {int(Role.MANAGER)}
        WHERE t.audience = '{Audience.ACCOUNT}'
        UNION ALL
        SELECT t.key, t.account_id, m.user_id, m.role
        FROM targets t
        JOIN tenancy_account a ON a.id = t.account_id
        JOIN tenancy_organisation o ON o.id = a.organisation_id
        JOIN tenancy_membership m ON m.organisation_id = o.parent_id
             AND m.role <= {int(Role.MANAGER)}
        WHERE t.audience = '{Audience.ESCALATION}'
        UNION ALL
        SELECT t.key, t.account_id, m.user_id, m.role
        FROM targets t
        JOIN tenancy_account a ON a.id = t.account_id
        JOIN tenancy_organisation o ON o.id = a.organisation_id
        JOIN tenancy_organisation up ON o.path LIKE up.path || '%%'
        JOIN tenancy_membership m ON m.organisation_id = up.id
        WHERE t.audience = '{Audience.EVERYONE}'
    ) found
    GROUP BY key, account_id, user_id
"""  # noqa: S608 - constant SQL; values are parameters


def members_to_notify(*, account_id: int, audience: Audience) -> list[tuple[int, Role]]:
    """Return (user id, highest role) of the active people told about `account_id`, by id."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH targets AS (SELECT '' AS key, %s::bigint AS account_id, %s AS audience),
                 recipients AS ({MEMBERS_TO_NOTIFY_SQL})
            SELECT r.user_id, r.role FROM recipients r
            JOIN users_user u ON u.id = r.user_id AND u.is_active
            ORDER BY r.user_id
            """,  # noqa: S608 - constant SQL, values are parameters
            [account_id, str(audience)],
        )
        return [(user_id, Role(role)) for user_id, role in cursor.fetchall()]
