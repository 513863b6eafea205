"""Tariffs, the prepaid ledger, top-ups and payments, bills, shortage warnings, data exports.

Money in the ledger is whole minor units of the account's currency (`BigIntegerField`); rates
are Decimals with up to six places; `portal.lib.money` holds the one rounding rule. Postings
and journal entries are append-only (their `Meta.triggers`, the audit app's TRUNCATE guard, and
`manage.py db_grant_app_role` revokes UPDATE/DELETE from the app's role), and a deferred
constraint trigger refuses a transaction whose entry's postings do not sum to zero.
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path
from typing import Self

from django.conf import settings
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import ArrayField, DateRangeField, RangeOperators
from django.core.files.storage import FileSystemStorage
from django.db import models
from django.db.models import Func, Q
from django.utils.translation import gettext_lazy as _

from meters.models import UtilityKind
from portal.lib.currency import CURRENCY_CHOICES, validate_currency
from portal.lib.money import format_minor
from portal.lib.triggers import AppendOnly


def _daterange(start: str, end: str) -> Func:
    return Func(start, end, function="daterange", output_field=DateRangeField())


# --- Tariffs ------------------------------------------------------------------------------


class TariffQuerySet(models.QuerySet["Tariff"]):
    def available_to(self, organisation_ids: list[int]) -> Self:
        """Public tariffs and the contract tariffs of the given organisations."""
        return self.filter(Q(organisation__isnull=True) | Q(organisation_id__in=organisation_ids))


class Tariff(models.Model):
    """A named price list for one utility kind and currency; its versions carry the prices."""

    class QuantityUnit(models.TextChoices):
        KWH = "kWh", "kWh"
        M3 = "m3", "m³"

    public_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID")
    )
    code = models.SlugField(_("code"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("utility"), max_length=16, choices=UtilityKind.choices)
    currency = models.CharField(
        _("currency"), max_length=3, choices=CURRENCY_CHOICES, validators=[validate_currency]
    )
    quantity_unit = models.CharField(
        _("priced per"),
        max_length=4,
        choices=QuantityUnit.choices,
        help_text=_("kWh for energy registers (Wh), m³ for volume registers (litres)."),
    )
    organisation = models.ForeignKey(
        "tenancy.Organisation",
        verbose_name=_("contract organisation"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("Empty for a public tariff; set for a contract tariff of one organisation."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    objects = TariffQuerySet.as_manager()

    class Meta:
        verbose_name = _("tariff")
        verbose_name_plural = _("tariffs")

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class TariffVersion(models.Model):
    """The prices of a tariff over [valid_from, valid_to), in local days of the account.

    `structure` is validated by `billing.pricing.parse_structure` (flat, tiered blocks per
    billing period, time-of-use bands by weekday/weekend and clock time, seasonal variants).
    """

    tariff = models.ForeignKey(
        Tariff, on_delete=models.PROTECT, related_name="versions", verbose_name=_("tariff")
    )
    valid_from = models.DateField(_("valid from"))
    valid_to = models.DateField(_("valid until (exclusive)"), null=True, blank=True)
    standing_charge = models.DecimalField(
        _("standing charge per day"), max_digits=18, decimal_places=6
    )
    tax_rate = models.DecimalField(
        _("tax rate"), max_digits=6, decimal_places=4, help_text=_("0.0500 for 5 %.")
    )
    structure = models.JSONField(_("price structure"))
    export_rate = models.DecimalField(
        _("export credit per unit"),
        null=True,
        blank=True,
        help_text=_(
            "Paid for every unit read from export registers (rooftop solar), in full and "
            "untaxed, as an entry of its own: on a prepaid account a day that exports more "
            "than it costs raises the balance; on a bill it is a credit line."
        ),
        max_digits=18,
        decimal_places=6,
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("tariff version")
        verbose_name_plural = _("tariff versions")
        ordering = ["tariff", "valid_from"]
        constraints = [
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gt=models.F("valid_from")),
                name="billing_tariffversion_period",
            ),
            models.CheckConstraint(
                condition=Q(standing_charge__gte=0)
                & Q(tax_rate__gte=0)
                & Q(tax_rate__lt=1)
                & (Q(export_rate__isnull=True) | Q(export_rate__gte=0)),
                name="billing_tariffversion_amounts",
            ),
            ExclusionConstraint(
                name="billing_tariffversion_no_overlap",
                violation_error_message=_("The period overlaps another one."),
                expressions=[
                    ("tariff", RangeOperators.EQUAL),
                    (_daterange("valid_from", "valid_to"), RangeOperators.OVERLAPS),
                ],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tariff} from {self.valid_from}"


class TariffAssignmentQuerySet(models.QuerySet["TariffAssignment"]):
    def for_account(self, account_id: int) -> Self:
        return self.filter(account_id=account_id)


class TariffAssignment(models.Model):
    """The tariff an account pays at one service point over [valid_from, valid_to)."""

    account = models.ForeignKey(
        "tenancy.Account", on_delete=models.PROTECT, related_name="+", verbose_name=_("account")
    )
    service_point = models.ForeignKey(
        "meters.ServicePoint",
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("service point"),
    )
    tariff = models.ForeignKey(
        Tariff, on_delete=models.PROTECT, related_name="assignments", verbose_name=_("tariff")
    )
    valid_from = models.DateField(_("valid from"))
    valid_to = models.DateField(_("valid until (exclusive)"), null=True, blank=True)

    objects = TariffAssignmentQuerySet.as_manager()

    class Meta:
        verbose_name = _("tariff assignment")
        verbose_name_plural = _("tariff assignments")
        constraints = [
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gt=models.F("valid_from")),
                name="billing_assignment_period",
            ),
            ExclusionConstraint(
                name="billing_assignment_no_overlap",
                violation_error_message=_("The period overlaps another one."),
                expressions=[
                    ("account", RangeOperators.EQUAL),
                    ("service_point", RangeOperators.EQUAL),
                    (_daterange("valid_from", "valid_to"), RangeOperators.OVERLAPS),
                ],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} @ {self.service_point_id}: {self.tariff_id}"


class Holiday(models.Model):
    """A public holiday: no disconnection is queued on it."""

    day = models.DateField(_("day"), unique=True)
    name = models.CharField(_("name"), max_length=200)

    class Meta:
        verbose_name = _("public holiday")
        verbose_name_plural = _("public holidays")
        ordering = ["day"]

    def __str__(self) -> str:
        return f"{self.day} {self.name}"


# --- Ledger -------------------------------------------------------------------------------


class LedgerAccount(models.Model):
    """An account of the double-entry ledger: a wallet, payment clearing, revenue, tax, …

    Signs: a posting's amount is positive for a debit and negative for a credit. A wallet is a
    liability of the utility to the customer, so its balance (what the customer has) is the
    negated sum of its postings; `Wallet.balance` keeps that figure.
    """

    class Kind(models.TextChoices):
        WALLET = "wallet", _("prepaid wallet")
        CLEARING = "clearing", _("payment clearing")
        REVENUE = "revenue", _("revenue")
        TAX = "tax", _("tax payable")
        ADJUSTMENTS = "adjustments", _("adjustments")
        RECEIVABLE = "receivable", _("accounts receivable")

    code = models.CharField(_("code"), max_length=80, unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    currency = models.CharField(
        _("currency"), max_length=3, choices=CURRENCY_CHOICES, validators=[validate_currency]
    )
    name = models.CharField(_("name"), max_length=200)

    class Meta:
        verbose_name = _("ledger account")
        verbose_name_plural = _("ledger accounts")

    def __str__(self) -> str:
        return self.code


class WalletQuerySet(models.QuerySet["Wallet"]):
    def for_account(self, account_id: int) -> Self:
        return self.filter(account_id=account_id)


class Wallet(models.Model):
    """A prepaid account's credit: its ledger account and the running balance of it."""

    account = models.OneToOneField(
        "tenancy.Account",
        on_delete=models.PROTECT,
        related_name="wallet",
        verbose_name=_("account"),
    )
    ledger_account = models.OneToOneField(
        LedgerAccount,
        on_delete=models.PROTECT,
        related_name="wallet",
        verbose_name=_("ledger account"),
    )
    currency = models.CharField(
        _("currency"), max_length=3, choices=CURRENCY_CHOICES, validators=[validate_currency]
    )
    balance = models.BigIntegerField(_("balance (minor units)"), default=0)
    emergency_credit = models.BigIntegerField(
        _("emergency credit (minor units)"),
        default=0,
        help_text=_("How far below zero the balance may go before supply is disconnected."),
    )
    disconnected_at = models.DateTimeField(_("disconnected"), null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated"))

    objects = WalletQuerySet.as_manager()

    class Meta:
        verbose_name = _("wallet")
        verbose_name_plural = _("wallets")
        constraints = [
            models.CheckConstraint(
                condition=Q(emergency_credit__gte=0), name="billing_wallet_emergency_credit"
            ),
        ]

    def __str__(self) -> str:
        return f"wallet of {self.account_id}"


class JournalEntry(models.Model):
    """One business event in the ledger; its postings sum to zero. Never changed or deleted:
    a correction is a new entry that `reverses` the old one."""

    class Kind(models.TextChoices):
        TOPUP = "topup", _("top-up")
        CHARGE = "charge", _("daily charge")
        REFUND = "refund", _("refund")
        ADJUSTMENT = "adjustment", _("adjustment")
        REVERSAL = "reversal", _("reversal")
        BILL = "bill", _("bill")
        BILL_PAYMENT = "bill_payment", _("bill payment")
        EXPORT_CREDIT = "export_credit", _("export credit")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    account = models.ForeignKey(
        "tenancy.Account",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("account"),
    )
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES, verbose_name=_("currency"))
    memo = models.CharField(_("memo"), max_length=300)
    idempotency_key = models.CharField(
        max_length=160, unique=True, verbose_name=_("idempotency key")
    )
    reverses = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reversed_by",
        verbose_name=_("reverses"),
    )
    effective_date = models.DateField(_("effective date"))
    created_at = models.DateTimeField(_("created"))
    created_by_label = models.CharField(max_length=254, verbose_name=_("created by"))

    class Meta:
        verbose_name = _("journal entry")
        verbose_name_plural = _("journal entries")
        indexes = [models.Index(fields=["account", "created_at"], name="billing_journal_account")]
        # TRUNCATE is refused by raw SQL in migration 0002: see portal.lib.triggers.
        triggers = [AppendOnly(name="billing_journal_append_only")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class Posting(models.Model):
    """One line of a journal entry: positive debits, negative credits, in minor units."""

    entry = models.ForeignKey(
        JournalEntry,
        on_delete=models.PROTECT,
        related_name="postings",
        verbose_name=_("journal entry"),
    )
    ledger_account = models.ForeignKey(
        LedgerAccount,
        on_delete=models.PROTECT,
        related_name="postings",
        verbose_name=_("ledger account"),
    )
    amount = models.BigIntegerField(_("amount (minor units)"))

    class Meta:
        verbose_name = _("posting")
        verbose_name_plural = _("postings")
        indexes = [models.Index(fields=["ledger_account", "entry"], name="billing_posting_account")]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="billing_posting_nonzero"),
        ]
        # Raw SQL in migration 0002 keeps TRUNCATE refused (see portal.lib.triggers) and checks
        # that each INSERT's postings balance and move the wallets: a statement-level trigger
        # over a transition table that reads other tables, which no pgtrigger rule expresses.
        triggers = [AppendOnly(name="billing_posting_append_only")]

    def __str__(self) -> str:
        # The admin shows this under each posting: money, not minor units.
        return f"{self.ledger_account_id}: {format_minor(self.amount, self.entry.currency)}"


class DailyChargeQuerySet(models.QuerySet["DailyCharge"]):
    def for_account(self, account_id: int) -> Self:
        return self.filter(account_id=account_id)


class DailyCharge(models.Model):
    """A prepaid account's charge for one local day at one service point: exactly one.

    `net`, `tax` and `total` are the charge for imported energy and the standing charge;
    `credit` is the export credit of the day, posted as its own journal entry (`credit_entry`),
    never netted into the charge (billing.costs).
    """

    account = models.ForeignKey(
        "tenancy.Account", on_delete=models.PROTECT, related_name="+", verbose_name=_("account")
    )
    service_point = models.ForeignKey(
        "meters.ServicePoint",
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("service point"),
    )
    day = models.DateField(_("day"))
    tariff_version = models.ForeignKey(
        TariffVersion, on_delete=models.PROTECT, related_name="+", verbose_name=_("tariff version")
    )
    consumption = models.BigIntegerField(_("consumption (base units)"))
    export = models.BigIntegerField(_("export (base units)"), default=0)
    estimated = models.BigIntegerField(_("estimated (base units)"), default=0)
    net = models.BigIntegerField(_("net (minor units)"))
    tax = models.BigIntegerField(_("tax (minor units)"))
    total = models.BigIntegerField(_("total (minor units)"))
    lines = models.JSONField(_("lines"), default=list)
    entry = models.OneToOneField(
        JournalEntry,
        null=True,
        on_delete=models.PROTECT,
        related_name="daily_charge",
        verbose_name=_("journal entry"),
    )
    credit = models.BigIntegerField(_("export credit (minor units)"), default=0)
    credit_entry = models.OneToOneField(
        JournalEntry,
        null=True,
        on_delete=models.PROTECT,
        related_name="daily_credit",
        verbose_name=_("export credit entry"),
    )
    created_at = models.DateTimeField(_("created"))

    objects = DailyChargeQuerySet.as_manager()

    class Meta:
        verbose_name = _("daily charge")
        verbose_name_plural = _("daily charges")
        constraints = [
            models.UniqueConstraint(
                fields=["account", "service_point", "day"], name="billing_dailycharge_once"
            ),
            models.CheckConstraint(
                condition=Q(total=models.F("net") + models.F("tax")),
                name="billing_dailycharge_total",
            ),
            models.CheckConstraint(condition=Q(credit__gte=0), name="billing_dailycharge_credit"),
        ]
        indexes = [models.Index(fields=["account", "day"], name="billing_charge_account_day")]

    def __str__(self) -> str:
        return f"charge {self.account_id} @ {self.service_point_id} on {self.day}"


class PrepaidChargeRun(models.Model):
    """One run of the daily prepaid charge (billing.services.charging): the due days of every
    time zone, as of `as_of`.

    Its progress is the DailyCharge rows it writes, a chunk of accounts per transaction. While
    a worker runs it, that worker's database session holds the run's advisory lock; a run
    still `running` whose lock is free lost its worker, and the sweeper (beat, every 30 s)
    queues it again: it charges what is left, never a (account, service point, day) twice.
    """

    class Status(models.TextChoices):
        RUNNING = "running", _("running")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    as_of = models.DateTimeField(_("as of"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.RUNNING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    charged = models.PositiveIntegerField(_("charges written"), default=0)
    error = models.TextField(_("error"), blank=True)
    started_at = models.DateTimeField(_("started"))
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    created_by_label = models.CharField(max_length=254, verbose_name=_("started by"))

    class Meta:
        verbose_name = _("prepaid charge run")
        verbose_name_plural = _("prepaid charge runs")
        indexes = [
            models.Index(
                fields=["started_at"],
                condition=Q(status="running"),
                name="billing_chargerun_running",
            )
        ]

    def __str__(self) -> str:
        return f"prepaid charge run {self.pk} as of {self.as_of:%Y-%m-%d %H:%M}"


# --- Top-ups and payments -----------------------------------------------------------------


class TopUpQuerySet(models.QuerySet["TopUp"]):
    def for_account(self, account_id: int) -> Self:
        return self.filter(account_id=account_id)


class TopUp(models.Model):
    """A resident's payment into a wallet through a payment provider."""

    class Status(models.TextChoices):
        CREATED = "created", _("created")
        PENDING = "pending", _("waiting for payment")
        UNKNOWN = "unknown", _("unknown (checking with the provider)")
        SUCCEEDED = "succeeded", _("paid")
        FAILED = "failed", _("failed")
        REFUNDED = "refunded", _("refunded")

    public_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID")
    )
    account = models.ForeignKey(
        "tenancy.Account", on_delete=models.PROTECT, related_name="+", verbose_name=_("account")
    )
    wallet = models.ForeignKey(
        Wallet, on_delete=models.PROTECT, related_name="topups", verbose_name=_("wallet")
    )
    amount = models.BigIntegerField(_("amount (minor units)"))
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES, verbose_name=_("currency"))
    provider = models.CharField(_("provider"), max_length=32)
    provider_ref = models.CharField(_("provider reference"), max_length=120, blank=True)
    idempotency_key = models.CharField(max_length=120, verbose_name=_("idempotency key"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.CREATED
    )
    entry = models.OneToOneField(
        JournalEntry,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="topup",
        verbose_name=_("journal entry"),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created"))
    updated_at = models.DateTimeField(_("updated"))
    error = models.CharField(_("error"), max_length=300, blank=True)

    objects = TopUpQuerySet.as_manager()

    class Meta:
        verbose_name = _("top-up")
        verbose_name_plural = _("top-ups")
        constraints = [
            models.UniqueConstraint(
                fields=["account", "idempotency_key"], name="billing_topup_idempotency"
            ),
            models.UniqueConstraint(
                fields=["provider", "provider_ref"],
                condition=~Q(provider_ref=""),
                name="billing_topup_provider_ref",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="billing_topup_positive"),
        ]

    def __str__(self) -> str:
        return f"top-up {self.public_id} ({self.status})"


class WebhookEvent(models.Model):
    """A provider's webhook exactly as received; deduplicated by the provider's event id."""

    provider = models.CharField(max_length=32, verbose_name=_("provider"))
    event_id = models.CharField(max_length=120, verbose_name=_("event ID"))
    event_type = models.CharField(max_length=64, blank=True, verbose_name=_("event type"))
    body = models.TextField(verbose_name=_("body"))
    signature = models.CharField(max_length=300, blank=True, verbose_name=_("signature"))
    verified = models.BooleanField(default=False, verbose_name=_("verified"))
    received_at = models.DateTimeField(verbose_name=_("received"))
    deliveries = models.PositiveIntegerField(default=1, verbose_name=_("deliveries"))
    processed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("processed"))
    error = models.CharField(max_length=300, blank=True, verbose_name=_("error"))

    class Meta:
        verbose_name = _("payment webhook")
        verbose_name_plural = _("payment webhooks")
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="billing_webhook_once"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_id}"


class WebhookRejection(models.Model):
    """Deliveries refused before they were trusted (bad signature, no event): counted per
    provider, reason and hour, never stored with their bodies, so that nobody can fill the
    database by posting to the public endpoint."""

    provider = models.CharField(max_length=32, verbose_name=_("provider"))
    reason = models.CharField(max_length=100, verbose_name=_("reason"))
    hour = models.DateTimeField(verbose_name=_("hour"))
    count = models.PositiveIntegerField(default=1, verbose_name=_("deliveries"))
    last_digest = models.CharField(
        max_length=64, blank=True, verbose_name=_("SHA-256 of the last body")
    )
    last_size = models.PositiveIntegerField(default=0, verbose_name=_("size of the last body"))
    last_address = models.GenericIPAddressField(
        null=True, blank=True, verbose_name=_("last sender address")
    )
    last_at = models.DateTimeField(verbose_name=_("last received"))

    class Meta:
        verbose_name = _("refused payment webhook")
        verbose_name_plural = _("refused payment webhooks")
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "reason", "hour"], name="billing_webhook_rejection_hour"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.reason} {self.hour:%Y-%m-%d %H}:00 x{self.count}"


# --- Bills --------------------------------------------------------------------------------


class BillRun(models.Model):
    """A monthly run that drafts and issues the bills of every postpaid account."""

    class Status(models.TextChoices):
        RUNNING = "running", _("running")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    period_start = models.DateField(_("period start"), unique=True)
    period_end = models.DateField(_("period end (exclusive)"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.RUNNING
    )
    bills = models.PositiveIntegerField(_("bills"), default=0)
    skipped = models.PositiveIntegerField(_("skipped"), default=0)
    error = models.TextField(_("error"), blank=True)
    started_at = models.DateTimeField(_("started"))
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    created_by_label = models.CharField(max_length=254, verbose_name=_("started by"))

    class Meta:
        verbose_name = _("bill run")
        verbose_name_plural = _("bill runs")

    def __str__(self) -> str:
        return f"bill run {self.period_start:%Y-%m}"


class BillSequence(models.Model):
    """The bill numbers of one issuer: an organisation, or the utility itself for residents'
    households (organisation empty).

    `next_number` is taken under a row lock inside the issuing transaction, so numbers have no
    gaps. A bill's number is `<prefix>-<year of issue>-<next_number, six digits or more>`, e.g.
    `HR-2026-000123`; the series runs on across years (the year dates the bill, it does not
    restart the count). The households' prefix comes from `BILLING_HOUSEHOLD_BILL_PREFIX`; an
    organisation's is stored here (billing's own record, not a tenancy field), derived from its
    name when its first bill is issued.
    """

    organisation = models.OneToOneField(
        "tenancy.Organisation", null=True, on_delete=models.PROTECT, related_name="+"
    )
    prefix = models.CharField(
        _("bill number prefix"),
        max_length=12,
        blank=True,
        help_text=_("Capital letters and digits, printed before the year in bill numbers."),
    )
    next_number = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organisation"],
                nulls_distinct=False,
                name="billing_billsequence_one_per_organisation",
            ),
            # Two issuers with one prefix would print the same bill numbers.
            models.UniqueConstraint(
                fields=["prefix"],
                condition=~Q(prefix=""),
                name="billing_billsequence_prefix_unique",
            ),
            models.CheckConstraint(
                condition=Q(prefix__regex=r"^[A-Z0-9]{0,12}$"),
                name="billing_billsequence_prefix_form",
            ),
        ]

    def __str__(self) -> str:
        issuer = self.organisation_id or "households"
        return f"bill numbers {self.prefix or '-'} of {issuer}: next {self.next_number}"


class BillQuerySet(models.QuerySet["Bill"]):
    def for_account(self, account_id: int) -> Self:
        return self.filter(account_id=account_id)


class Bill(models.Model):
    """A postpaid account's bill for a period: draft → issued → paid, or void.

    A voided bill is never deleted: voiding issues a credit note (a bill with negated lines
    whose `credit_note_for` is the voided bill).
    """

    class Status(models.TextChoices):
        DRAFT = "draft", _("draft")
        ISSUED = "issued", _("issued")
        PAID = "paid", _("paid")
        VOID = "void", _("void")

    public_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID")
    )
    account = models.ForeignKey(
        "tenancy.Account", on_delete=models.PROTECT, related_name="+", verbose_name=_("account")
    )
    organisation = models.ForeignKey(
        "tenancy.Organisation",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("organisation"),
    )
    # The printed number (`HR-2026-000123`), set once at issue and never changed; unique
    # across every issuer. `sequence_number` is its place in the issuer's gap-free series.
    number = models.CharField(_("number"), max_length=32, blank=True, default="", db_default="")
    sequence_number = models.PositiveIntegerField(_("sequence number"), null=True, blank=True)
    # Quoted with a transfer so that the payment finds its bill: see bill_payment_reference().
    payment_reference = models.CharField(
        _("payment reference"), max_length=64, blank=True, default="", db_default=""
    )
    run = models.ForeignKey(
        BillRun,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="bill_set",
        verbose_name=_("bill run"),
    )
    period_start = models.DateField(_("period start"))
    period_end = models.DateField(_("period end (exclusive)"))
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES, verbose_name=_("currency"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.DRAFT
    )
    subtotal = models.BigIntegerField(_("subtotal (minor units)"), default=0)
    tax = models.BigIntegerField(_("tax (minor units)"), default=0)
    total = models.BigIntegerField(_("total (minor units)"), default=0)
    has_estimates = models.BooleanField(_("includes estimated consumption"), default=False)
    credit_note_for = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="credit_note",
        verbose_name=_("credit note for"),
    )
    issued_at = models.DateTimeField(_("issued"), null=True, blank=True)
    due_at = models.DateTimeField(_("due"), null=True, blank=True)
    paid_at = models.DateTimeField(_("paid"), null=True, blank=True)
    voided_at = models.DateTimeField(_("voided"), null=True, blank=True)
    void_reason = models.CharField(_("reason for voiding"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created"))

    objects = BillQuerySet.as_manager()

    class Meta:
        verbose_name = _("bill")
        verbose_name_plural = _("bills")
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "sequence_number"],
                nulls_distinct=False,
                condition=Q(sequence_number__isnull=False),
                name="billing_bill_sequence_unique",
            ),
            models.UniqueConstraint(
                fields=["number"], condition=~Q(number=""), name="billing_bill_number_unique"
            ),
            models.UniqueConstraint(
                fields=["payment_reference"],
                condition=~Q(payment_reference=""),
                name="billing_bill_payment_reference_unique",
            ),
            # One regular bill per account and period; credit notes stand apart.
            models.UniqueConstraint(
                fields=["account", "period_start"],
                condition=Q(credit_note_for__isnull=True),
                name="billing_bill_once_per_period",
            ),
            models.CheckConstraint(
                condition=Q(total=models.F("subtotal") + models.F("tax")),
                name="billing_bill_total",
            ),
            models.CheckConstraint(
                condition=Q(status="draft")
                | (Q(sequence_number__isnull=False) & ~Q(number="") & ~Q(payment_reference="")),
                name="billing_bill_numbered_when_issued",
            ),
        ]

    def __str__(self) -> str:
        return f"bill {self.number or 'draft'} of {self.account_id}"


class BillLine(models.Model):
    class Kind(models.TextChoices):
        CONSUMPTION = "consumption", _("consumption")
        STANDING = "standing", _("standing charge")
        EXPORT = "export", _("export credit")
        ADJUSTMENT = "adjustment", _("adjustment")
        TAX = "tax", _("tax")

    bill = models.ForeignKey(
        Bill, on_delete=models.CASCADE, related_name="lines", verbose_name=_("bill")
    )
    position = models.PositiveSmallIntegerField(verbose_name=_("position"))
    kind = models.CharField(max_length=16, choices=Kind.choices, verbose_name=_("kind"))
    service_point = models.ForeignKey(
        "meters.ServicePoint",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("service point"),
    )
    label = models.CharField(max_length=200, verbose_name=_("label"))
    band = models.CharField(max_length=64, blank=True, verbose_name=_("band"))
    quantity = models.DecimalField(max_digits=20, decimal_places=6, verbose_name=_("quantity"))
    unit = models.CharField(max_length=8, verbose_name=_("unit"))
    unit_price = models.DecimalField(max_digits=18, decimal_places=6, verbose_name=_("unit price"))
    amount = models.BigIntegerField(_("amount (minor units)"))
    estimated = models.BooleanField(default=False, verbose_name=_("estimated"))

    class Meta:
        verbose_name = _("bill line")
        verbose_name_plural = _("bill lines")
        ordering = ["bill", "position"]
        constraints = [
            models.UniqueConstraint(fields=["bill", "position"], name="billing_billline_position")
        ]

    def __str__(self) -> str:
        return f"{self.label}: {format_minor(self.amount, self.bill.currency)}"


# --- Shortage warnings --------------------------------------------------------------------


class WarningPolicy(models.Model):
    """Thresholds (days of credit left; 0 is an empty balance) for an organisation's accounts
    or for one account; the nearest policy up the tree applies, else the site's default."""

    organisation = models.OneToOneField(
        "tenancy.Organisation",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("organisation"),
    )
    account = models.OneToOneField(
        "tenancy.Account",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("account"),
    )
    thresholds = ArrayField(models.PositiveSmallIntegerField(), verbose_name=_("thresholds (days)"))

    class Meta:
        verbose_name = _("warning policy")
        verbose_name_plural = _("warning policies")
        constraints = [
            models.CheckConstraint(
                condition=Q(account__isnull=True, organisation__isnull=False)
                | Q(account__isnull=False, organisation__isnull=True),
                name="billing_warningpolicy_one_tenant",
            ),
        ]

    def __str__(self) -> str:
        return f"thresholds {self.thresholds}"


class ShortageWarning(models.Model):
    """One warning per account, threshold and crossing; `crossing` counts the times the
    account's credit came back above every threshold (a top-up), so a new fall warns again."""

    account = models.ForeignKey(
        "tenancy.Account", on_delete=models.PROTECT, related_name="+", verbose_name=_("account")
    )
    threshold = models.PositiveSmallIntegerField(_("threshold (days)"))
    crossing = models.PositiveIntegerField(verbose_name=_("crossing"))
    level = models.PositiveSmallIntegerField(_("escalation level"), default=0)
    balance = models.BigIntegerField(_("balance (minor units)"))
    days_left = models.DecimalField(
        max_digits=8, decimal_places=1, null=True, verbose_name=_("days left")
    )
    created_at = models.DateTimeField(_("created"))

    class Meta:
        verbose_name = _("shortage warning")
        verbose_name_plural = _("shortage warnings")
        constraints = [
            models.UniqueConstraint(
                fields=["account", "threshold", "crossing", "level"],
                name="billing_warning_once_per_crossing",
            ),
        ]

    def __str__(self) -> str:
        return f"warning {self.account_id} at {self.threshold} days"


# --- Data exports -------------------------------------------------------------------------


def export_storage() -> FileSystemStorage:
    """Where export ZIPs are kept: a folder under MEDIA_ROOT that no URL serves; the portal
    hands a file out only through its download view, to members of its account."""
    return FileSystemStorage(location=Path(settings.MEDIA_ROOT) / "exports", base_url=None)


class DataExportQuerySet(models.QuerySet["DataExport"]):
    def for_account(self, account_id: int) -> Self:
        return self.filter(account_id=account_id)


class DataExport(models.Model):
    """A resident's request for all of their account's data, built by a task into one ZIP.

    `rows_done` of `rows_total` is the progress the page polls. The file exists only once the
    export is done (it is written under a temporary name and renamed), and is deleted when the
    export expires.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("being prepared")
        DONE = "done", _("ready")
        FAILED = "failed", _("failed")
        EXPIRED = "expired", _("expired")

    public_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID")
    )
    account = models.ForeignKey(
        "tenancy.Account", on_delete=models.PROTECT, related_name="+", verbose_name=_("account")
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("requested by"),
    )
    requested_by_label = models.CharField(
        max_length=254, verbose_name=_("requested by (as recorded)")
    )
    language = models.CharField(_("language"), max_length=16, default="en")
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.QUEUED
    )
    part = models.CharField(_("part being written"), max_length=40, blank=True)
    rows_done = models.BigIntegerField(_("rows written"), default=0)
    rows_total = models.BigIntegerField(_("rows in all"), default=0)
    attempts = models.PositiveSmallIntegerField(default=0, verbose_name=_("attempts"))
    error = models.TextField(_("error"), blank=True)
    file = models.FileField(_("file"), storage=export_storage, max_length=200, blank=True)
    size = models.BigIntegerField(_("size (bytes)"), default=0)
    created_at = models.DateTimeField(_("requested"))
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)

    objects = DataExportQuerySet.as_manager()

    class Meta:
        verbose_name = _("data export")
        verbose_name_plural = _("data exports")
        constraints = [
            # One export in the works per account: asking again returns it.
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(status__in=["queued", "running"]),
                name="billing_dataexport_one_open",
            ),
            models.CheckConstraint(
                condition=Q(rows_done__gte=0) & Q(rows_total__gte=0) & Q(size__gte=0),
                name="billing_dataexport_counts",
            ),
            models.CheckConstraint(
                condition=~Q(status="done") | (~Q(file="") & Q(expires_at__isnull=False)),
                name="billing_dataexport_done_has_file",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="billing_export_account"),
            models.Index(fields=["status", "expires_at"], name="billing_export_expiry"),
        ]

    def __str__(self) -> str:
        return f"export {self.public_id} ({self.status})"

    @property
    def percent(self) -> int:
        if self.status in (self.Status.DONE, self.Status.EXPIRED):
            return 100
        if not self.rows_total:
            return 0
        return min(99, self.rows_done * 100 // self.rows_total)

    @property
    def finished(self) -> bool:
        return self.status not in (self.Status.QUEUED, self.Status.RUNNING)

    def downloadable(self, as_of: datetime.datetime) -> bool:
        return (
            self.status == self.Status.DONE
            and bool(self.file)
            and self.expires_at is not None
            and as_of < self.expires_at
        )
