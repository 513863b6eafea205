"""The append-only, hash-chained audit log."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils.translation import gettext_lazy as _

from portal.audit.events import AUDIT_EVENTS, AuditEvent, event_display
from portal.lib.triggers import AppendOnly


class AuditLogEntryQuerySet(models.QuerySet["AuditLogEntry"]):
    def for_account(self, account_id: int) -> AuditLogEntryQuerySet:
        return self.filter(account_id=account_id)

    def for_organisations(self, organisation_ids: list[int]) -> AuditLogEntryQuerySet:
        return self.filter(organisation_id__in=organisation_ids)

    def of_types(self, event_types: list[int]) -> AuditLogEntryQuerySet:
        return self.filter(event_type__in=event_types)


class AuditLogEntry(models.Model):
    """One audited change, denial or authentication event.

    Rows are written only by `portal.audit.services.audit_record`, inside the transaction of the
    change they describe. A database trigger rejects UPDATE, DELETE and TRUNCATE; `hash` covers
    the row's content and `prev_hash`, the hash of the row before it in its `chain`, one chain
    per tenant root (see `portal.audit.chain`).
    """

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(_("time"))
    # "org:<root id>", "homes:<n>" or "global"; within a chain, id order is chain order.
    chain = models.CharField(_("chain"), max_length=32)
    # No `choices`: the registry grows with every app, and a migration per new event would
    # only repeat it. Names and texts come from portal.audit.events.
    event_type = models.PositiveSmallIntegerField(_("event"))
    # Tenant keys. Both are set for account events (the account's organisation at that moment),
    # so that an organisation's log covers the accounts beneath it with one indexed filter.
    account = models.ForeignKey(
        "tenancy.Account",
        verbose_name=_("account"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    organisation = models.ForeignKey(
        "tenancy.Organisation",
        verbose_name=_("organisation"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    # The entry outlives the user: no database constraint, and the label keeps who it was.
    actor = models.ForeignKey(
        "users.User",
        verbose_name=_("actor"),
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_label = models.CharField(_("actor label"), max_length=254)
    target_type = models.CharField(_("target type"), max_length=64, blank=True)
    target_id = models.CharField(_("target id"), max_length=64, blank=True)
    data = models.JSONField(_("data"), default=dict, encoder=DjangoJSONEncoder)
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    request_id = models.UUIDField(_("request id"), null=True, blank=True)
    prev_hash = models.CharField(_("previous hash"), max_length=64)
    hash = models.CharField(_("hash"), max_length=64, unique=True)

    objects = AuditLogEntryQuerySet.as_manager()

    class Meta:
        verbose_name = _("audit log entry")
        verbose_name_plural = _("audit log entries")
        indexes = [
            models.Index(fields=["account", "-created_at"], name="audit_entry_account_time"),
            models.Index(
                fields=["account", "event_type", "-created_at"], name="audit_entry_account_event"
            ),
            models.Index(fields=["organisation", "-created_at"], name="audit_entry_org_time"),
            models.Index(fields=["actor", "-created_at"], name="audit_entry_actor_time"),
            # A chain's head (its newest row) is one index probe.
            models.Index(fields=["chain", "id"], name="audit_entry_chain_id"),
        ]
        # TRUNCATE is refused by raw SQL in migration 0002: see portal.lib.triggers.
        triggers = [AppendOnly(name="audit_entry_append_only")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.event_name} by {self.actor_label}"

    @property
    def event_name(self) -> str:
        try:
            return AUDIT_EVENTS[AuditEvent(self.event_type)].api_name
        except ValueError:
            return str(self.event_type)

    @property
    def display(self) -> str:
        return event_display(self.event_type, self.data)


class AuditCheckpoint(models.Model):
    """An anchor: every chain's head at one moment, kept apart so that cutting rows off the end
    of a chain is noticed too.

    A hash chain shows any edit, deletion or reordering before its newest row; it cannot show
    that its newest rows were removed. An anchor records each chain's head ([id, hash] in
    `heads`) and is itself HMAC-chained to the anchor before it (`prev_hash`, `hash`), so that
    nobody without the audit key can forge or drop one in the middle; a later verification
    fails if an anchored head is gone or changed. The periodic task writes one whenever a head
    moved; each successful verification writes one too (with `entries_verified`).

    Rows from before there were several chains have no `hash`: each records the head of the
    one chain, now the `global` chain, in `entry_id` and `entry_hash`.
    """

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(_("time"))
    # The newest entry of all anchored heads (legacy rows: the head of the one chain).
    entry_id = models.BigIntegerField(_("entry id"))
    entry_hash = models.CharField(_("entry hash"), max_length=64)
    # Empty for an anchor written without verifying the chains first.
    entries_verified = models.BigIntegerField(_("entries verified"), null=True, blank=True)
    heads = models.JSONField(_("chain heads"), default=dict)
    prev_hash = models.CharField(_("previous hash"), max_length=64, blank=True, default="")
    hash = models.CharField(_("hash"), max_length=64, blank=True, default="")

    class Meta:
        verbose_name = _("audit checkpoint")
        verbose_name_plural = _("audit checkpoints")
        # TRUNCATE is refused by raw SQL in migration 0002: see portal.lib.triggers.
        triggers = [AppendOnly(name="audit_checkpoint_append_only")]

    def __str__(self) -> str:
        return f"anchor #{self.pk} at entry {self.entry_id}"
