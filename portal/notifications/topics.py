"""The catalogue of what a person can be told about; preferences are kept per topic."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Topic(models.TextChoices):
    SHORTAGE = "shortage", _("low credit")
    BILL_ISSUED = "bill_issued", _("bill issued")
    BILL_OVERDUE = "bill_overdue", _("bill overdue")
    LEAK = "leak", _("leak or water flowing at night")
    TAMPER = "tamper", _("tampering with a meter")
    COMMS_LOSS = "comms_loss", _("meter out of contact")
    VALVE = "valve", _("valve opened or closed")


# Alarms about the supply itself: a viewer only looks at an account, so these reach viewers
# only when they switched a channel on for the topic themselves.
OPERATIONAL_TOPICS = frozenset({Topic.LEAK, Topic.TAMPER, Topic.COMMS_LOSS, Topic.VALVE})

# States rather than emergencies (a meter that has been silent a day, a valve a technician
# turned): told only to those who switched a channel on for them, whatever their role, or every
# household with a flat battery would be mailed by default.
OPT_IN_TOPICS = frozenset({Topic.COMMS_LOSS, Topic.VALVE})
