"""The append-only, hash-chained audit log."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils.translation import gettext_lazy as _

from portal.audit.events import AUDIT_EVENTS, AuditEvent, event_display


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
    the row's content and `prev_hash`, the hash of the row before it (see `portal.audit.chain`).
    """

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(_("time"))
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
        ]

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
    """A verified chain head, kept apart so that cutting rows off the end is noticed too.

    The hash chain shows any edit, deletion or reordering before the newest row; it cannot show
    that the newest rows were removed. Each successful verification records the head it saw;
    a later verification fails if that row is gone or changed.
    """

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(_("time"))
    entry_id = models.BigIntegerField(_("entry id"))
    entry_hash = models.CharField(_("entry hash"), max_length=64)
    entries_verified = models.BigIntegerField(_("entries verified"))

    class Meta:
        verbose_name = _("audit checkpoint")
        verbose_name_plural = _("audit checkpoints")

    def __str__(self) -> str:
        return f"checkpoint #{self.pk} at entry {self.entry_id}"
