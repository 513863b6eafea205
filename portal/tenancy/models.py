"""Organisations, accounts, memberships and invitations: who may see which customer data."""

from __future__ import annotations

import uuid
from typing import Self

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

from portal.lib.currency import CURRENCY_CHOICES, validate_currency
from portal.lib.timezones import default_time_zone, validate_time_zone
from portal.tenancy.roles import Role

# A materialised path of ids, "/1/5/9/", so that a subtree is one indexed prefix match.
MAX_ORGANISATION_DEPTH = 8


class OrganisationQuerySet(models.QuerySet["Organisation"]):
    def subtree_of(self, organisation: Organisation) -> Self:
        """Return the organisation and everything beneath it."""
        return self.filter(path__startswith=organisation.path)

    def roots(self) -> Self:
        return self.filter(parent__isnull=True)


class Organisation(models.Model):
    """A corporate group, a subsidiary, or any level below: each manages its own accounts."""

    public_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID")
    )
    name = models.CharField(_("name"), max_length=200)
    parent = models.ForeignKey(
        "self",
        verbose_name=_("parent organisation"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
    )
    path = models.CharField(max_length=255, editable=False, verbose_name=_("tree path"))
    depth = models.PositiveSmallIntegerField(editable=False, default=0, verbose_name=_("depth"))
    require_mfa = models.BooleanField(
        _("require two-factor authentication for owners and managers"), default=False
    )
    # The zone of the organisation's own pages (its audit log, invitations, API keys); each of
    # its accounts keeps its own zone for the account's pages.
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        default=default_time_zone,
        validators=[validate_time_zone],
        help_text=_("Times on the organisation's pages are shown in this zone, e.g. Asia/Taipei."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    objects = OrganisationQuerySet.as_manager()

    class Meta:
        verbose_name = _("organisation")
        verbose_name_plural = _("organisations")
        indexes = [
            models.Index(
                fields=["path"], name="tenancy_org_path_prefix", opclasses=["text_pattern_ops"]
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(path__regex=r"^/([0-9]+/)+$"), name="tenancy_organisation_path_form"
            ),
            models.CheckConstraint(
                condition=Q(depth__lt=MAX_ORGANISATION_DEPTH), name="tenancy_organisation_depth"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def ancestor_ids(self) -> list[int]:
        """Return the ids from the root down to this organisation itself."""
        return ancestor_ids_from_path(self.path)


def ancestor_ids_from_path(path: str) -> list[int]:
    """Parse "/1/5/9/" into [1, 5, 9]."""
    return [int(part) for part in path.strip("/").split("/") if part]


class AccountQuerySet(models.QuerySet["Account"]):
    def in_subtree(self, organisation: Organisation) -> Self:
        """Return the accounts of the organisation and of every organisation beneath it."""
        return self.filter(organisation__path__startswith=organisation.path)


class Account(models.Model):
    """The tenant root for customer data: a household's or a business's billing account."""

    class PaymentMode(models.TextChoices):
        PREPAID = "prepaid", _("Prepaid")
        POSTPAID = "postpaid", _("Postpaid (contract)")

    public_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID")
    )
    number = models.CharField(
        _("account number"),
        max_length=32,
        unique=True,
        help_text=_("The public number printed on bills and quoted to support."),
    )
    name = models.CharField(_("name"), max_length=200)
    payment_mode = models.CharField(_("payment mode"), max_length=16, choices=PaymentMode.choices)
    currency = models.CharField(
        _("currency"), max_length=3, choices=CURRENCY_CHOICES, validators=[validate_currency]
    )
    time_zone = models.CharField(_("time zone"), max_length=64, validators=[validate_time_zone])
    organisation = models.ForeignKey(
        Organisation,
        verbose_name=_("organisation"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="accounts",
        help_text=_("Empty for a resident's household."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)

    objects = AccountQuerySet.as_manager()

    class Meta:
        verbose_name = _("account")
        verbose_name_plural = _("accounts")
        constraints = [
            models.CheckConstraint(
                condition=Q(payment_mode__in=["prepaid", "postpaid"]),
                name="tenancy_account_payment_mode_known",
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="tenancy_account_currency_form"
            ),
            models.CheckConstraint(
                condition=Q(number__regex=r"^[0-9A-Z-]{4,32}$"),
                name="tenancy_account_number_form",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.name}"


class TenantGrant(models.Model):
    """A role on exactly one tenant: an account, or an organisation (and so its subtree).

    The base of Membership and Invitation; the check constraints make "exactly one tenant" and
    "a known role" hold in the database, whatever code writes the row.
    """

    account = models.ForeignKey(
        Account,
        verbose_name=_("account"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="%(class)ss",
    )
    organisation = models.ForeignKey(
        Organisation,
        verbose_name=_("organisation"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="%(class)ss",
    )
    role = models.PositiveSmallIntegerField(_("role"), choices=Role.choices)

    class Meta:
        abstract = True
        constraints = [
            models.CheckConstraint(
                condition=Q(account__isnull=True, organisation__isnull=False)
                | Q(account__isnull=False, organisation__isnull=True),
                name="%(app_label)s_%(class)s_one_tenant",
            ),
            models.CheckConstraint(
                condition=Q(role__in=[r.value for r in Role]),
                name="%(app_label)s_%(class)s_role_known",
            ),
        ]

    @property
    def tenant(self) -> Account | Organisation:
        tenant = self.account if self.account is not None else self.organisation
        if tenant is None:  # excluded by the one_tenant constraint
            raise ValueError(f"{type(self).__name__} {self.pk} has no tenant")
        return tenant


class MembershipQuerySet(models.QuerySet["Membership"]):
    def for_account(self, account: Account) -> Self:
        return self.filter(account=account)

    def for_organisation(self, organisation: Organisation) -> Self:
        return self.filter(organisation=organisation)


class Membership(TenantGrant):
    """A person's role on one account, or on an organisation and so its whole subtree."""

    public_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="memberships",
    )
    created_at = models.DateTimeField(_("since"), auto_now_add=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("invited by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    objects = MembershipQuerySet.as_manager()

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            *TenantGrant.Meta.constraints,
            models.UniqueConstraint(
                fields=["user", "account"],
                condition=Q(account__isnull=False),
                name="tenancy_membership_one_per_account",
            ),
            models.UniqueConstraint(
                fields=["user", "organisation"],
                condition=Q(organisation__isnull=False),
                name="tenancy_membership_one_per_organisation",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {Role(self.role).label} · {self.tenant}"


class InvitationQuerySet(models.QuerySet["Invitation"]):
    def pending(self) -> Self:
        return self.filter(accepted_at__isnull=True, revoked_at__isnull=True)


class Invitation(TenantGrant):
    """An invitation by email to join an account or organisation with a role.

    The token in the emailed link is an HMAC of the invitation's id and `nonce` under the
    site's secret key, so it is never stored or passed through the task broker; sending the
    invitation again draws a new nonce, which invalidates the old link.
    """

    public_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID")
    )
    email = models.EmailField(_("email"))
    nonce = models.CharField(max_length=32, editable=False, verbose_name=_("nonce"))
    language = models.CharField(_("language"), max_length=16, default="en")
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("invited by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("sent"))
    expires_at = models.DateTimeField(_("expires"))
    accepted_at = models.DateTimeField(_("accepted"), null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("accepted by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    last_sent_at = models.DateTimeField(_("email sent"), null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        constraints = [
            *TenantGrant.Meta.constraints,
            models.CheckConstraint(
                condition=Q(email=Lower("email")), name="tenancy_invitation_email_lower"
            ),
            models.UniqueConstraint(
                fields=["email", "account"],
                condition=Q(
                    account__isnull=False, accepted_at__isnull=True, revoked_at__isnull=True
                ),
                name="tenancy_invitation_one_pending_per_account",
            ),
            models.UniqueConstraint(
                fields=["email", "organisation"],
                condition=Q(
                    organisation__isnull=False, accepted_at__isnull=True, revoked_at__isnull=True
                ),
                name="tenancy_invitation_one_pending_per_organisation",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} · {Role(self.role).label}"


class OrganisationAPIKey(models.Model):
    """A machine credential of an organisation: a head-end system sends readings with it.

    Only a SHA-256 of the key is stored; the key itself is shown once, when it is created. The
    public prefix finds the row and names the key in the audit log. A key is revoked, never
    deleted, so that the audit entries it signed keep their meaning.
    """

    public_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID")
    )
    organisation = models.ForeignKey(
        Organisation,
        verbose_name=_("organisation"),
        on_delete=models.PROTECT,
        related_name="api_keys",
    )
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True)
    hashed_key = models.CharField(max_length=64, verbose_name=_("hashed key"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"
