"""The metering fleet and its readings.

Service points, meters and registers are the utility's fleet data, not tenant-owned rows:
customers reach them only through `Supply` (account ↔ service point over time). Everything a
customer reads (rollups, events) carries the account of the supply period.

Readings are stored by SQL (migrations 0002 and 0013, whose functions are the only way in and
out of the layout) and written only by the import pipeline's SQL and the staff's edits, never
through model instances: `Reading` is the view of every reading, for reading.

Quantities are bigint base units: Wh for energy (electricity, heat, and gas measured as energy),
litres for volume (water, and gas measured by volume).
"""

from __future__ import annotations

import enum
import uuid
from typing import Any, Self

from django.conf import settings
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import ArrayField, DateTimeRangeField, RangeOperators
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Func, Q
from django.utils.translation import gettext_lazy as _

from portal.lib.timezones import validate_time_zone


class UtilityKind(models.TextChoices):
    ELECTRICITY = "electricity", _("Electricity")
    WATER = "water", _("Water")
    GAS = "gas", _("Gas")
    HEAT = "heat", _("Heat")


class Unit(models.TextChoices):
    WH = "Wh", _("watt-hours")
    L = "L", _("litres")
    VARH = "varh", _("volt-ampere reactive hours")


class RegisterDirection(models.TextChoices):
    """What a register measures. Only IMPORT and EXPORT registers feed the rollups (and so the
    usage charts, charges and bills): reactive energy is not billed, and a total register that
    sits beside the tariff registers of its direction would count the same energy twice."""

    IMPORT = "import", _("Consumption")
    EXPORT = "export", _("Generation (export)")
    REACTIVE_IMPORT = "reactive_import", _("Reactive energy, import (not billed)")
    REACTIVE_EXPORT = "reactive_export", _("Reactive energy, export (not billed)")
    IMPORT_TOTAL = "import_total", _("Consumption total beside its tariff registers")
    EXPORT_TOTAL = "export_total", _("Generation total beside its tariff registers")


# The register directions the rollups (and everything that reads them) take.
ROLLUP_DIRECTIONS = ("import", "export")


class Direction(models.TextChoices):
    IMPORT = "import", _("Consumption")
    EXPORT = "export", _("Generation (export)")


class Quality(models.IntegerChoices):
    ACTUAL = 0, _("actual")
    PENDING = 1, _("pending")
    ESTIMATED = 2, _("estimated")
    EDITED = 3, _("edited")
    SUSPECT = 4, _("suspect")


class Rule(enum.IntFlag):
    """Validation rules; a reading's `flags` holds every rule that fired on it."""

    CONFLICT = 1 << 1  # another value arrived for the same register and time
    GAP = 1 << 2  # a gap longer than can be estimated precedes this reading
    ESTIMATED = 1 << 3  # filled in by linear interpolation across a short gap
    ROLLOVER = 1 << 4  # the register wrapped past its dials
    RESET = 1 << 5  # the register went back without a rollover or exchange
    METER_EXCHANGE = 1 << 6  # the meter was exchanged between this reading and the last
    NEGATIVE = 1 << 7  # negative consumption on an import register
    SPIKE = 1 << 8  # more than the meter can physically pass in the interval
    STUCK = 1 << 9  # the register has not moved for longer than its kind allows
    CLOCK_SKEW = 1 << 10  # the timestamp is off the interval grid or far from receipt
    EDITED = 1 << 13  # changed by staff, with a reason (ReadingEdit)
    TAMPER = 1 << 14  # the meter reported tampering at this reading


# Rules that make a reading unusable for charts and bills until someone looks at it.
SUSPECT_RULES = (
    Rule.CONFLICT | Rule.RESET | Rule.NEGATIVE | Rule.SPIKE | Rule.STUCK | Rule.CLOCK_SKEW
)


class ServicePointQuerySet(models.QuerySet["ServicePoint"]):
    def supplied_to(self, account_id: int) -> Self:
        return self.filter(supplies__account_id=account_id).distinct()


class ServicePoint(models.Model):
    """A physical supply point at an address, for one utility kind."""

    public_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID")
    )
    code = models.CharField(
        _("code"), max_length=64, unique=True, help_text=_("The utility's identifier, e.g. EAN.")
    )
    kind = models.CharField(_("kind"), max_length=16, choices=UtilityKind.choices)
    address = models.CharField(_("address"), max_length=300, blank=True)
    # Its daily rollups are local days of this zone; changing it rebuilds them (fleet_save).
    time_zone = models.CharField(
        _("time zone"), max_length=64, default="UTC", validators=[validate_time_zone]
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    objects = ServicePointQuerySet.as_manager()

    class Meta:
        verbose_name = _("service point")
        verbose_name_plural = _("service points")

    def __str__(self) -> str:
        return f"{self.code} ({self.get_kind_display()})"


class Meter(models.Model):
    class Communication(models.TextChoices):
        LTE = "4g", "4G"
        NBIOT = "nbiot", "NB-IoT"
        CAT1 = "cat1", "Cat-1"
        LORAWAN = "lorawan", "LoRaWAN"
        P1 = "p1", "DSMR P1"
        WMBUS = "wmbus", "wM-Bus"
        MANUAL = "manual", _("manual")

    class Valve(models.TextChoices):
        UNKNOWN = "", _("unknown")
        OPEN = "open", _("open")
        CLOSED = "closed", _("closed")

    public_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID")
    )
    serial = models.CharField(_("serial number"), max_length=64, unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=UtilityKind.choices)
    communication = models.CharField(
        _("communication"), max_length=16, choices=Communication.choices, default="manual"
    )
    dev_eui = models.CharField(
        _("LoRaWAN DevEUI"), max_length=16, null=True, blank=True, unique=True
    )
    # The fleet owner when it is not the utility (a property operator's sub-meters): such an
    # organisation's head-end may submit this meter's readings.
    organisation = models.ForeignKey(
        "tenancy.Organisation",
        verbose_name=_("owned by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="meters",
    )
    max_rate = models.BigIntegerField(
        _("physical maximum per hour"),
        help_text=_("In base units (Wh or L) per hour; readings above it are spikes."),
    )
    battery_percent = models.PositiveSmallIntegerField(_("battery %"), null=True, blank=True)
    last_contact_at = models.DateTimeField(_("last contact"), null=True, blank=True)
    valve_state = models.CharField(
        _("valve / relay"), max_length=8, choices=Valve.choices, default="", blank=True
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("meter")
        verbose_name_plural = _("meters")
        constraints = [
            models.CheckConstraint(condition=Q(max_rate__gt=0), name="meters_meter_max_rate_pos"),
            models.CheckConstraint(
                condition=Q(battery_percent__lte=100), name="meters_meter_battery_range"
            ),
            # Imports match DevEUIs as 16 upper-case hex digits, however a head-end writes them.
            models.CheckConstraint(
                condition=Q(dev_eui__regex=r"^[0-9A-F]{16}$"), name="meters_meter_dev_eui_hex"
            ),
        ]

    def __str__(self) -> str:
        return self.serial

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.dev_eui is not None:
            self.dev_eui = self.dev_eui.strip().upper() or None
        super().save(*args, **kwargs)


class Register(models.Model):
    """One measured quantity of a meter: import or export, possibly per tariff rate (T1/T2)."""

    class Series(models.TextChoices):
        REGISTER = "register", _("cumulative register values")
        INTERVAL = "interval", _("interval consumption")

    meter = models.ForeignKey(
        Meter, on_delete=models.CASCADE, related_name="registers", verbose_name=_("meter")
    )
    code = models.CharField(_("code"), max_length=32)
    direction = models.CharField(
        _("direction"),
        max_length=16,
        choices=RegisterDirection.choices,
        default=RegisterDirection.IMPORT,
    )
    tariff_rate = models.PositiveSmallIntegerField(_("meter tariff rate"), null=True, blank=True)
    unit = models.CharField(_("base unit"), max_length=4, choices=Unit.choices)
    series = models.CharField(
        _("series"), max_length=8, choices=Series.choices, default=Series.REGISTER
    )
    dials = models.PositiveSmallIntegerField(
        _("dials"),
        null=True,
        blank=True,
        help_text=_("Whole digits the register shows before it rolls over to zero."),
    )
    display_unit = models.CharField(
        _("display unit"),
        max_length=8,
        blank=True,
        help_text=_("The unit the register shows, e.g. kWh or m3 (for the rollover point)."),
    )
    multiplier = models.PositiveIntegerField(_("multiplier"), default=1)
    # The rollover point in base units: 10^dials display units, times the multiplier. Derived.
    wrap_value = models.BigIntegerField(
        null=True, blank=True, editable=False, verbose_name=_("wrap value")
    )
    obis = models.CharField(_("OBIS code"), max_length=32, blank=True)
    interval_seconds = models.PositiveIntegerField(
        _("expected interval (s)"), null=True, blank=True
    )
    is_main = models.BooleanField(_("main import register"), default=False)
    stuck_hours = models.PositiveSmallIntegerField(
        _("stuck after (hours)"),
        default=24,
        help_text=_("An unchanged register for this long is flagged as stuck."),
    )

    class Meta:
        verbose_name = _("register")
        verbose_name_plural = _("registers")
        constraints = [
            models.UniqueConstraint(fields=["meter", "code"], name="meters_register_code_unique"),
            models.UniqueConstraint(
                fields=["meter"], condition=Q(is_main=True), name="meters_register_one_main"
            ),
        ]
        # Deleting a register that still has readings is refused by raw SQL in migration 0005,
        # not Meta.triggers: the rule looks up meters_reading, which no pgtrigger Protect
        # condition (it sees only the row itself) can express.

    def __str__(self) -> str:
        return f"{self.meter.serial}/{self.code}"

    def clean(self) -> None:
        from meters.ingest.units import UNITS, normalise_unit

        self.wrap_value = None
        if self.dials:
            base, factor = UNITS.get(normalise_unit(self.display_unit or self.unit), (None, None))
            if base is None or factor is None:
                raise ValidationError({"display_unit": _("Unknown unit.")})
            if base != self.unit:
                raise ValidationError(
                    {"display_unit": _("The display unit must measure the same as the register.")}
                )
            self.wrap_value = int(10**self.dials * factor * self.multiplier)


class MeterInstallation(models.Model):
    """A meter at a service point over [installed_at, removed_at): meter exchanges."""

    meter = models.ForeignKey(
        Meter, on_delete=models.PROTECT, related_name="installations", verbose_name=_("meter")
    )
    service_point = models.ForeignKey(
        ServicePoint,
        on_delete=models.PROTECT,
        related_name="installations",
        verbose_name=_("service point"),
    )
    installed_at = models.DateTimeField(_("installed"))
    removed_at = models.DateTimeField(_("removed"), null=True, blank=True)

    class Meta:
        verbose_name = _("meter installation")
        verbose_name_plural = _("meter installations")
        constraints = [
            models.CheckConstraint(
                condition=Q(removed_at__isnull=True) | Q(removed_at__gt=models.F("installed_at")),
                name="meters_installation_period",
            ),
            # A meter is at one service point at a time.
            ExclusionConstraint(
                name="meters_installation_no_overlap",
                expressions=[
                    ("meter", RangeOperators.EQUAL),
                    (
                        Func(
                            "installed_at",
                            "removed_at",
                            function="tstzrange",
                            output_field=DateTimeRangeField(),
                        ),
                        RangeOperators.OVERLAPS,
                    ),
                ],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.meter} @ {self.service_point}"


class SupplyQuerySet(models.QuerySet["Supply"]):
    def for_account(self, account_id: int) -> Self:
        return self.filter(account_id=account_id)


class Supply(models.Model):
    """An account's supply at a service point over [start, end): move-in to move-out.

    An account sees a service point's data only within its supply periods.
    """

    account = models.ForeignKey(
        "tenancy.Account", on_delete=models.PROTECT, related_name="+", verbose_name=_("account")
    )
    service_point = models.ForeignKey(
        ServicePoint,
        on_delete=models.PROTECT,
        related_name="supplies",
        verbose_name=_("service point"),
    )
    start = models.DateTimeField(_("move-in"))
    end = models.DateTimeField(_("move-out"), null=True, blank=True)

    objects = SupplyQuerySet.as_manager()

    class Meta:
        verbose_name = _("supply")
        verbose_name_plural = _("supplies")
        constraints = [
            models.CheckConstraint(
                condition=Q(end__isnull=True) | Q(end__gt=models.F("start")),
                name="meters_supply_period",
            ),
            # One occupant at a time.
            ExclusionConstraint(
                name="meters_supply_no_overlap",
                expressions=[
                    ("service_point", RangeOperators.EQUAL),
                    (
                        Func(
                            "start", "end", function="tstzrange", output_field=DateTimeRangeField()
                        ),
                        RangeOperators.OVERLAPS,
                    ),
                ],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} @ {self.service_point_id} from {self.start:%Y-%m-%d}"


class Reading(models.Model):
    """One reading. Read-only here: the import pipeline's SQL is the only writer."""

    pk = models.CompositePrimaryKey("register_id", "ts")
    # No database constraint: a trigger on meters_register guards it (migration 0005).
    register = models.ForeignKey(
        Register, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False
    )
    ts = models.DateTimeField()
    start_ts = models.DateTimeField(null=True)
    value = models.BigIntegerField(null=True)
    delta = models.BigIntegerField(null=True)
    quality = models.SmallIntegerField(choices=Quality.choices)
    flags = models.IntegerField()
    batch = models.ForeignKey(
        "meters.ImportBatch",
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )

    class Meta:
        # A view of the two tables below (migration 0013): never flushed or migrated by Django.
        managed = False
        db_table = "meters_reading"
        verbose_name = _("reading")
        verbose_name_plural = _("readings")

    def __str__(self) -> str:
        return f"{self.register_id}@{self.ts.isoformat()}"


class ReadingSide(models.Model):
    """Readings one row each: daily, monthly and manual reads, and times off a register's grid.

    Created by SQL (partitioned by month; migrations 0002 and 0013); Django knows the table so
    that its test flush truncates it.
    """

    pk = models.CompositePrimaryKey("register_id", "ts")
    register = models.ForeignKey(
        Register, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False
    )
    ts = models.DateTimeField()
    start_ts = models.DateTimeField(null=True)
    value = models.BigIntegerField(null=True)
    delta = models.BigIntegerField(null=True)
    quality = models.SmallIntegerField()
    flags = models.IntegerField()
    batch = models.ForeignKey(
        "meters.ImportBatch",
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )

    class Meta:
        db_table = "meters_readingside"

    def __str__(self) -> str:
        return f"{self.register_id}@{self.ts.isoformat()}"


class ChannelDay(models.Model):
    """A register's interval readings of one UTC day, as arrays positioned by interval.

    Created by SQL (partitioned by month; migration 0013); Django knows the table so that its
    test flush truncates it. Read and written only through the functions of migration 0013.
    """

    pk = models.CompositePrimaryKey("register_id", "day")
    register = models.ForeignKey(
        Register, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False
    )
    day = models.DateField()
    service_point_id = models.BigIntegerField(null=True)
    interval_s = models.IntegerField()
    vals = ArrayField(models.BigIntegerField(null=True))
    deltas = ArrayField(models.BigIntegerField(null=True))
    quality = ArrayField(models.SmallIntegerField(null=True))
    flags = ArrayField(models.IntegerField(null=True))
    spans = ArrayField(models.IntegerField(null=True))
    batch_id = models.BigIntegerField(null=True)

    class Meta:
        db_table = "meters_channelday"

    def __str__(self) -> str:
        return f"{self.register_id}@{self.day.isoformat()}"


class ReadingConflict(models.Model):
    """A second, different value for an existing reading: kept here, never silently applied."""

    register = models.ForeignKey(
        Register, on_delete=models.CASCADE, related_name="+", verbose_name=_("register")
    )
    ts = models.DateTimeField(verbose_name=_("time"))
    value = models.BigIntegerField(null=True, verbose_name=_("register value"))
    delta = models.BigIntegerField(null=True, verbose_name=_("interval consumption"))
    existing_value = models.BigIntegerField(null=True, verbose_name=_("existing register value"))
    existing_delta = models.BigIntegerField(
        null=True, verbose_name=_("existing interval consumption")
    )
    batch = models.ForeignKey(
        "meters.ImportBatch",
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("import batch"),
    )
    line = models.BigIntegerField(null=True, verbose_name=_("line"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    resolved_at = models.DateTimeField(null=True, blank=True, verbose_name=_("resolved"))

    class Meta:
        verbose_name = _("reading conflict")
        verbose_name_plural = _("reading conflicts")
        constraints = [
            # The same conflicting value arriving again is the same conflict.
            models.UniqueConstraint(
                fields=["register", "ts", "value", "delta"],
                nulls_distinct=False,
                name="meters_conflict_once",
            ),
        ]

    def __str__(self) -> str:
        return f"conflict {self.register_id}@{self.ts.isoformat()}"


class ReadingEdit(models.Model):
    """A staff correction of a reading: the original stays here, the reason is mandatory."""

    register = models.ForeignKey(
        Register, on_delete=models.PROTECT, related_name="+", verbose_name=_("register")
    )
    ts = models.DateTimeField(_("reading time"))
    old_value = models.BigIntegerField(null=True, verbose_name=_("old register value"))
    old_delta = models.BigIntegerField(null=True, verbose_name=_("old interval consumption"))
    old_quality = models.SmallIntegerField(verbose_name=_("old quality"))
    old_flags = models.IntegerField(verbose_name=_("old flags"))
    new_value = models.BigIntegerField(_("new register value"), null=True, blank=True)
    new_delta = models.BigIntegerField(_("new interval consumption"), null=True, blank=True)
    reason = models.TextField(_("reason"))
    edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("edited by"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))

    class Meta:
        verbose_name = _("reading edit")
        verbose_name_plural = _("reading edits")
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="meters_edit_reason_required")
        ]

    def __str__(self) -> str:
        return f"edit {self.register_id}@{self.ts.isoformat()}"


class ImportBatch(models.Model):
    class Source(models.TextChoices):
        UPLOAD = "upload", _("portal upload")
        ADMIN = "admin", _("admin")
        INBOX = "inbox", _("inbox folder")
        API = "api", _("API")
        CHIRPSTACK = "chirpstack", _("ChirpStack HTTP")
        MQTT = "mqtt", _("MQTT")
        COMMAND = "command", _("command line")

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        DSMR = "dsmr", "DSMR P1"
        ESPI = "espi", "Green Button ESPI"
        CHIRPSTACK = "chirpstack", "ChirpStack v4"
        JSON = "json", "JSON"

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        DONE = "done", _("done")
        DONE_WITH_REJECTIONS = "done_with_rejections", _("done, some rows rejected")
        REJECTED = "rejected", _("rejected: no row could be imported")
        FAILED = "failed", _("failed")
        DUPLICATE = "duplicate", _("same content as an earlier batch")

    class Stage(models.TextChoices):
        """Where a running batch is; a worker that dies resumes from the stage recorded here."""

        NONE = "", _("not running")
        PARSING = "parsing", _("parsing")
        VALIDATING = "validating", _("validating")
        MERGING = "merging", _("merging")
        FINISHING = "finishing", _("finishing")

    public_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID")
    )
    source = models.CharField(_("source"), max_length=16, choices=Source.choices)
    format = models.CharField(_("format"), max_length=16, choices=Format.choices)
    original_name = models.CharField(_("file name"), max_length=255, blank=True)
    sha256 = models.CharField(_("content SHA-256"), max_length=64, db_index=True)
    size = models.BigIntegerField(_("size (bytes)"))
    payload_path = models.CharField(max_length=500, verbose_name=_("payload path"))
    organisation = models.ForeignKey(
        "tenancy.Organisation",
        verbose_name=_("organisation"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("Set when an organisation sent it: only its own meters are accepted."),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_by_label = models.CharField(
        max_length=254, blank=True, verbose_name=_("created by (as recorded)")
    )
    register_meters = models.BooleanField(_("register unknown meters"), default=False)
    read_at = models.DateTimeField(
        _("read time"), null=True, blank=True, help_text=_("For telegrams without a timestamp.")
    )
    meter_serial = models.CharField(
        _("meter serial"),
        max_length=64,
        blank=True,
        help_text=_(
            "The meter that sent the file, for telegrams that carry no equipment identifier."
        ),
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text=_(
            "For service points the import registers, when the file does not state its zone."
        ),
    )
    dsmr_spec = models.CharField(
        _("DSMR telegram specification"),
        max_length=40,
        blank=True,
        help_text=_("Forced by the sender; blank: chosen from each telegram."),
    )
    read_time_source = models.CharField(
        _("read time taken from"),
        max_length=16,
        blank=True,
        help_text=_(
            "For telegrams without a timestamp: the read time the sender gave, or the "
            "head-end's delivery time."
        ),
    )
    received_at = models.DateTimeField(_("received"))
    duplicate_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("duplicate of"),
    )
    status = models.CharField(
        _("status"), max_length=24, choices=Status.choices, default=Status.QUEUED
    )
    stage = models.CharField(_("stage"), max_length=32, blank=True, choices=Stage.choices)
    progress = models.PositiveSmallIntegerField(_("progress %"), default=0)
    error = models.TextField(_("error"), blank=True)
    error_class = models.CharField(_("error class"), max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, verbose_name=_("attempts"))
    next_attempt_at = models.DateTimeField(
        _("next attempt"),
        null=True,
        blank=True,
        help_text=_("After an unexpected error: when the batch is tried again."),
    )
    chunks_total = models.PositiveIntegerField(default=0, verbose_name=_("chunks in all"))
    chunks_done = models.PositiveIntegerField(default=0, verbose_name=_("chunks done"))
    seen = models.BigIntegerField(default=0, verbose_name=_("rows seen"))
    # What the parse left in the staging tables: a later stage finding less starts again from
    # the file (pipeline.staging_lost), so no stage ever works from a partial table.
    staged = models.BigIntegerField(default=0, verbose_name=_("rows staged"))
    staged_events = models.BigIntegerField(default=0, verbose_name=_("events staged"))
    inserted = models.BigIntegerField(default=0, verbose_name=_("rows inserted"))
    duplicate = models.BigIntegerField(default=0, verbose_name=_("duplicate rows"))
    conflicting = models.BigIntegerField(default=0, verbose_name=_("conflicting rows"))
    rejected = models.BigIntegerField(default=0, verbose_name=_("rejected rows"))
    estimated = models.BigIntegerField(default=0, verbose_name=_("estimated rows"))
    row_error_count = models.BigIntegerField(default=0, verbose_name=_("row errors"))
    started_at = models.DateTimeField(null=True, blank=True, verbose_name=_("started"))
    finished_at = models.DateTimeField(null=True, blank=True, verbose_name=_("finished"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))

    class Meta:
        verbose_name = _("import batch")
        verbose_name_plural = _("import batches")
        indexes = [models.Index(fields=["status", "created_at"], name="meters_batch_status")]

    def __str__(self) -> str:
        return f"batch {self.pk} ({self.format}, {self.status})"

    @property
    def finished(self) -> bool:
        """The batch is over: it ended in one of the final states (a duplicate is over too)."""
        return self.status not in (self.Status.QUEUED, self.Status.RUNNING)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "seen": self.seen,
            "inserted": self.inserted,
            "duplicate": self.duplicate,
            "conflicting": self.conflicting,
            "rejected": self.rejected,
            "estimated": self.estimated,
        }


class ImportRowError(models.Model):
    """Why a row of a batch was rejected (the first errors of each batch are kept)."""

    batch = models.ForeignKey(
        ImportBatch,
        on_delete=models.CASCADE,
        related_name="row_errors",
        verbose_name=_("import batch"),
    )
    line = models.BigIntegerField(_("row"))
    code = models.CharField(_("code"), max_length=64, blank=True)
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    # Rows stored before errors had codes keep their English sentence here.
    message = models.TextField(_("message"), blank=True)

    class Meta:
        verbose_name = _("import row error")
        verbose_name_plural = _("import row errors")

    def __str__(self) -> str:
        return f"row {self.line}: {self.text}"

    @property
    def text(self) -> str:
        """The error in the active language."""
        if not self.code:
            return self.message
        from meters.ingest.errors import render

        return render(self.code, self.params)


class MeterEvent(models.Model):
    class Kind(models.TextChoices):
        TAMPER_MAGNETIC = "tamper_magnetic", _("tamper: magnetic field")
        TAMPER_TILT = "tamper_tilt", _("tamper: tilt")
        TAMPER_COVER = "tamper_cover", _("tamper: cover opened")
        LEAK = "leak", _("leak")
        BURST = "burst", _("burst")
        BACKFLOW = "backflow", _("backflow")
        VALVE_OPEN = "valve_open", _("valve opened")
        VALVE_CLOSED = "valve_closed", _("valve closed")
        BATTERY_LOW = "battery_low", _("battery low")
        POWER_OUTAGE = "power_outage", _("power outage")
        COMMUNICATION_LOST = "communication_lost", _("communication lost")
        NIGHT_FLOW = "night_flow", _("continuous night flow (probable leak)")

    class Severity(models.IntegerChoices):
        INFO = 10, _("information")
        WARNING = 20, _("warning")
        SERIOUS = 30, _("serious")

    meter = models.ForeignKey(
        Meter, on_delete=models.CASCADE, related_name="events", verbose_name=_("meter")
    )
    service_point = models.ForeignKey(
        ServicePoint,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("service point"),
    )
    account = models.ForeignKey(
        "tenancy.Account",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("account"),
    )
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    severity = models.PositiveSmallIntegerField(_("severity"), choices=Severity.choices)
    occurred_at = models.DateTimeField(_("occurred"))
    data = models.JSONField(_("data"), default=dict, blank=True)
    batch = models.ForeignKey(
        ImportBatch,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("import batch"),
    )
    notified_at = models.DateTimeField(_("members notified"), null=True, blank=True)
    acknowledged_at = models.DateTimeField(_("acknowledged"), null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("acknowledged by"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))

    class Meta:
        verbose_name = _("meter event")
        verbose_name_plural = _("meter events")
        constraints = [
            models.UniqueConstraint(
                fields=["meter", "kind", "occurred_at"], name="meters_event_once"
            ),
        ]
        indexes = [
            models.Index(fields=["account", "-occurred_at"], name="meters_event_account"),
            models.Index(fields=["acknowledged_at", "severity"], name="meters_event_open"),
        ]

    def __str__(self) -> str:
        return f"{self.meter} {self.kind} {self.occurred_at:%Y-%m-%d %H:%M}"


class MeterCommand(models.Model):
    """The outbox of commands to meters; a head-end adapter sends them and reports back."""

    class Command(models.TextChoices):
        VALVE_CLOSE = "valve_close", _("close valve")
        VALVE_OPEN = "valve_open", _("open valve")
        RELAY_DISCONNECT = "relay_disconnect", _("disconnect relay")
        RELAY_RECONNECT = "relay_reconnect", _("reconnect relay")

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SENT = "sent", _("sent")
        CONFIRMED = "confirmed", _("confirmed")
        FAILED = "failed", _("failed")
        CANCELLED = "cancelled", _("cancelled")

    public_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID")
    )
    meter = models.ForeignKey(
        Meter, on_delete=models.PROTECT, related_name="commands", verbose_name=_("meter")
    )
    command = models.CharField(_("command"), max_length=24, choices=Command.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    reason = models.CharField(_("reason"), max_length=300)
    idempotency_key = models.CharField(
        max_length=120, unique=True, verbose_name=_("idempotency key")
    )
    requested_by_label = models.CharField(max_length=254, verbose_name=_("requested by"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created"))
    sent_at = models.DateTimeField(null=True, blank=True, verbose_name=_("sent"))
    completed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("completed"))
    error = models.TextField(blank=True, verbose_name=_("error"))

    class Meta:
        verbose_name = _("meter command")
        verbose_name_plural = _("meter commands")
        indexes = [models.Index(fields=["status", "created_at"], name="meters_command_status")]

    def __str__(self) -> str:
        return f"{self.command} {self.meter} ({self.status})"


class RollupHourly(models.Model):
    """Consumption per service point, direction and UTC hour, with the account of the supply."""

    service_point = models.ForeignKey(ServicePoint, on_delete=models.CASCADE, related_name="+")
    direction = models.CharField(max_length=8, choices=Direction.choices)
    hour = models.DateTimeField()
    account = models.ForeignKey(
        "tenancy.Account", null=True, on_delete=models.DO_NOTHING, related_name="+"
    )
    consumption = models.BigIntegerField()
    estimated = models.BigIntegerField(default=0)
    suspect_count = models.IntegerField(default=0)
    reading_count = models.IntegerField(default=0)

    class Meta:
        # A view of HourlyDay (migration 0014), one row per hour: never flushed by Django.
        managed = False
        verbose_name = _("hourly rollup")
        verbose_name_plural = _("hourly rollups")

    def __str__(self) -> str:
        return f"{self.service_point_id} {self.direction} {self.hour:%Y-%m-%d %H:00}"


class HourlyDay(models.Model):
    """A service point's hourly rollups of one UTC day, direction and account, as arrays.

    Created by SQL (migration 0014); Django knows the table so that its test flush truncates
    it. Read through the `meters_rolluphourly` view or `meters_hourly(lo, hi)`.
    """

    # A key for Django only: rows are found by (service point, direction, day, account), which
    # cannot be the primary key because the account may be NULL.
    id = models.BigAutoField(primary_key=True)
    service_point = models.ForeignKey(ServicePoint, on_delete=models.CASCADE, related_name="+")
    direction = models.CharField(max_length=8)
    day = models.DateField()
    account = models.ForeignKey(
        "tenancy.Account", null=True, on_delete=models.DO_NOTHING, related_name="+"
    )
    consumption = ArrayField(models.BigIntegerField(null=True))
    estimated = ArrayField(models.BigIntegerField(null=True))
    suspect_count = ArrayField(models.IntegerField(null=True))
    reading_count = ArrayField(models.IntegerField(null=True))

    class Meta:
        db_table = "meters_hourlyday"

    def __str__(self) -> str:
        return f"{self.service_point_id} {self.direction} {self.day}"


class RollupDaily(models.Model):
    """Consumption per service point, direction and local day (23 or 25 hours on DST days)."""

    service_point = models.ForeignKey(ServicePoint, on_delete=models.CASCADE, related_name="+")
    direction = models.CharField(max_length=8, choices=Direction.choices)
    day = models.DateField()
    account = models.ForeignKey(
        "tenancy.Account", null=True, on_delete=models.DO_NOTHING, related_name="+"
    )
    consumption = models.BigIntegerField()
    estimated = models.BigIntegerField(default=0)
    suspect_count = models.IntegerField(default=0)
    reading_count = models.IntegerField(default=0)
    hours = models.SmallIntegerField(default=0)

    class Meta:
        verbose_name = _("daily rollup")
        verbose_name_plural = _("daily rollups")
        constraints = [
            models.UniqueConstraint(
                fields=["service_point", "direction", "day", "account"],
                nulls_distinct=False,
                name="meters_rollup_daily_key",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "direction", "day"], name="meters_rollup_d_account"),
        ]

    def __str__(self) -> str:
        return f"{self.service_point_id} {self.direction} {self.day}"


class InboundMessage(models.Model):
    """A message from a live source (ChirpStack HTTP, MQTT) waiting to join an import batch.

    Messages arrive one at a time; a flush task gathers thousands into one batch, so that no
    reading is ever processed on its own. `dedup_key` makes retried deliveries harmless.
    """

    source = models.CharField(max_length=16)
    dedup_key = models.CharField(max_length=200, unique=True)
    event = models.CharField(max_length=16)
    payload = models.JSONField()
    received_at = models.DateTimeField()
    batch = models.ForeignKey(
        ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("inbound message")
        verbose_name_plural = _("inbound messages")
        indexes = [
            models.Index(
                fields=["received_at"], condition=Q(batch__isnull=True), name="meters_inbound_open"
            )
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.dedup_key}"
