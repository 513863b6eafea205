"""Notifications (one message to one person on one channel) and members' preferences."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from portal.notifications.topics import Topic


class Notification(models.Model):
    """One message to one person on one channel, with its delivery status.

    `key` names what the message is about in the producing app ("warning:12", "bill:7:bill_issued",
    "event:40"): one message per key, person and channel. `texts` holds the message rendered by
    the producer in every language, {"en": {"subject", "body", "sms"}, ...}; the sender picks
    the person's language, or writes every language when they have none.
    """

    class Channel(models.TextChoices):
        EMAIL = "email", _("email")
        SMS = "sms", _("SMS")

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")
        SUPPRESSED = "suppressed", _("not sent (preferences)")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("person"),
    )
    account = models.ForeignKey(
        "tenancy.Account", on_delete=models.PROTECT, related_name="+", verbose_name=_("account")
    )
    topic = models.CharField(max_length=16, choices=Topic.choices, verbose_name=_("topic"))
    channel = models.CharField(max_length=8, choices=Channel.choices, verbose_name=_("channel"))
    key = models.CharField(max_length=64, verbose_name=_("about"))
    texts = models.JSONField(default=dict, blank=True, verbose_name=_("texts"))
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, verbose_name=_("status")
    )
    error = models.CharField(max_length=300, blank=True, verbose_name=_("error"))
    created_at = models.DateTimeField(verbose_name=_("created"))
    sent_at = models.DateTimeField(null=True, blank=True, verbose_name=_("sent"))

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        constraints = [
            models.UniqueConstraint(
                fields=["key", "user", "channel"], name="notifications_notification_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.topic} to {self.user_id} by {self.channel} ({self.status})"


class NotificationPreference(models.Model):
    """A member's channels for one topic, and their quiet hours (local to the account)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    topic = models.CharField(max_length=16, choices=Topic.choices)
    email = models.BooleanField(_("email"), default=True)
    sms = models.BooleanField(_("SMS"), default=False)
    phone = models.CharField(_("mobile number"), max_length=20, blank=True)
    quiet_start = models.TimeField(_("quiet from"), null=True, blank=True)
    quiet_end = models.TimeField(_("quiet until"), null=True, blank=True)

    class Meta:
        verbose_name = _("notification preference")
        verbose_name_plural = _("notification preferences")
        constraints = [
            models.UniqueConstraint(fields=["user", "topic"], name="notifications_preference_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} · {self.topic}"
