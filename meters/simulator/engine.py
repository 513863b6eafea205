"""The generator: each unit's readings window by window, the injected anomalies, the answer key.

Time is cut into windows (a week by default); every format writes one file per window (and per
group of units), which is the unit of delivery. Anomalies stay inside a window, away from its
edges, so that delivering the files in any order must give the same final state.

Only one unit's window is in memory at a time; what carries over between windows is a few
numbers per register (its value, when it last changed, its last readings).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import zoneinfo
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from meters.simulator.fleet import Fleet, Installation, MeterSpec, RegisterSpec, Unit
from meters.simulator.profiles import (
    CLIMATES,
    DAY_SECONDS,
    SLOT_SECONDS,
    SLOTS_PER_DAY,
    DayContext,
    day_amounts,
    day_context,
    vacations,
)

# Anomalies keep this far from a window's edges (slots), so no rule reaches across files.
MARGIN = 32
SHORT_GAP_MAX = 7  # missing readings: 7 x 15 min leaves 2 h between readings, still estimated
KINDS = (
    "gap_short",
    "gap_long",
    "spike",
    "negative",
    "rollover",
    "reset",
    "exchange",
    "stuck",
    "skew",
    "conflict",
    "duplicate",
    "tamper",
    "leak",
    "battery_low",
)
TAMPER_KINDS = ("tamper_magnetic", "tamper_cover", "tamper_tilt")
EVENT_FORMATS = ("csv", "json", "chirpstack")

Key = tuple[str, str]  # (meter serial, register code)


@dataclass(frozen=True)
class Anomaly:
    """One injected anomaly: where (unit, window, slot in the window) and its parameters."""

    id: int
    kind: str
    unit: str
    window: int
    slot: int
    serial: str = ""
    code: str = ""
    length: int = 1
    amount: int = 0
    minutes: int = 0
    event: str = ""


@dataclass
class Extra:
    """Readings besides the regular ones: an off-grid reading, a conflicting or repeated row,
    the previous window's last hour sent again. `values` holds every register the row (or DSMR
    telegram, or uplink) carries."""

    epoch: int
    values: dict[Key, int]
    kind: str
    before: bool = False


@dataclass
class UnitWindow:
    """One unit's readings for one window, as the writers need them."""

    unit: Unit
    first_epoch: int  # the time of slot 0's reading (the end of its interval)
    slots: int
    series: dict[Key, list[int | None]]
    events: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    extras: list[Extra] = field(default_factory=list)
    statuses: list[tuple[int, str, float]] = field(default_factory=list)

    def epoch(self, slot: int) -> int:
        return self.first_epoch + slot * SLOT_SECONDS


@dataclass
class KeyEntry:
    anomaly: int
    kind: str
    serial: str
    register: str | None
    epoch: int
    rule: str | None = None
    event: str | None = None
    count: int = 0

    def as_json(self) -> dict[str, object]:
        entry: dict[str, object] = {
            "anomaly": self.anomaly,
            "kind": self.kind,
            "serial": self.serial,
            "register": self.register,
            "ts": dt.datetime.fromtimestamp(self.epoch, dt.UTC).isoformat().replace("+00:00", "Z"),
        }
        if self.rule:
            entry["rule"] = self.rule
        if self.event:
            entry["event"] = self.event
        if self.count:
            entry["count"] = self.count
        return entry


@dataclass
class _RegisterState:
    value: int
    last_value: int | None = None
    last_change: int = 0
    tail: list[tuple[int, int]] = field(default_factory=list)


def uplink_delay(serial: str, epoch: int) -> int:
    """Seconds between a LoRaWAN reading and its uplink's arrival (deterministic)."""
    return 3 + int(hashlib.md5(f"{serial}{epoch}".encode()).hexdigest()[:4], 16) % 40  # noqa: S324


def _known(value: int | None) -> int:
    """A reading an anomaly relies on; the plan keeps anomalies apart, so it is there."""
    if value is None:
        raise ValueError("two anomalies overlap: a reading they rely on is missing")
    return value


def _round_half_away(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded like PostgreSQL's round(numeric)."""
    quotient = (2 * abs(numerator) + denominator) // (2 * denominator)
    return quotient if numerator >= 0 else -quotient


class Generator:
    """Generates the fleet's windows; keeps the per-register state and the answer key."""

    def __init__(
        self,
        *,
        fleet: Fleet,
        start: dt.datetime,
        days: int,
        window_days: int,
        seed: int,
        until: dt.datetime | None = None,
    ) -> None:
        if start.tzinfo is None or int(start.timestamp()) % SLOT_SECONDS:
            raise ValueError("start must be an aware time on the 15-minute grid")
        self.fleet = fleet
        self.seed = seed
        self.start_epoch = int(start.timestamp())
        # The last reading written: the end of the last day, or `until` if that is earlier.
        self.last_epoch = self.start_epoch + days * DAY_SECONDS
        if until is not None:
            self.last_epoch = min(
                self.last_epoch, int(until.timestamp()) // SLOT_SECONDS * SLOT_SECONDS
            )
        self.tz = zoneinfo.ZoneInfo(fleet.time_zone)
        self.climate = CLIMATES[fleet.climate]
        self.windows = [
            (d, min(window_days, days - d)) for d in range(0, days, max(1, window_days))
        ]
        # The answer key goes to `sink` entry by entry (a file, for big runs); what has to be
        # counted at the end (the distinct events) is kept.
        self.sink: Callable[[KeyEntry], object] = lambda entry: None
        self.events: set[tuple[str, str, int]] = set()
        self.totals: Counter[str] = Counter()
        self.recording = True
        self._state: dict[Key, _RegisterState] = {}
        self._away = {
            u.key: vacations(seed=seed, site=u.key, days=days) if u.residential else set()
            for u in fleet.units
        }
        self._battery: dict[str, float] = {}
        self._contexts: tuple[int, list[DayContext]] = (-1, [])
        self._specs: dict[Key, RegisterSpec] = {}
        self._index()
        self._reset_state()

    def _index(self) -> None:
        self._specs = {(m.serial, r.code): r for m, r in self._all_registers()}

    def _reset_state(self) -> None:
        self._state = {
            (m.serial, r.code): _RegisterState(value=r.initial) for m, r in self._all_registers()
        }
        for meter in self.fleet.meters():
            if meter.fmt == "chirpstack":
                digest = int(hashlib.md5(meter.serial.encode()).hexdigest()[:6], 16)  # noqa: S324
                self._battery[meter.serial] = 70.0 + digest % 30

    def _all_registers(self) -> list[tuple[MeterSpec, RegisterSpec]]:
        return [pair for u in self.fleet.units for pair in u.registers()]

    # --- amounts --------------------------------------------------------------------------

    def contexts(self, window: int) -> list[DayContext]:
        if self._contexts[0] != window:
            first, count = self.windows[window]
            self._contexts = (
                window,
                [self.context(day) for day in range(first, first + count)],
            )
        return self._contexts[1]

    def context(self, day: int) -> DayContext:
        return day_context(
            start_epoch=self.start_epoch + day * DAY_SECONDS,
            tz=self.tz,
            climate=self.climate,
            seed=self.seed,
        )

    def amounts(self, meter: MeterSpec, ctx: DayContext, *, away: bool) -> dict[str, list[int]]:
        """Each register's amount per slot of one day (consumption or export, base units)."""
        rng = random.Random(f"{self.seed}|{meter.serial}|{ctx.start_epoch}")  # noqa: S311
        use, generation = day_amounts(
            kind=meter.kind, load=meter.load, ctx=ctx, rng=rng, vacation=away
        )
        if meter.load.solar_kwp:
            net_import = [max(0, u - g) for u, g in zip(use, generation, strict=True)]
            net_export = [max(0, g - u) for u, g in zip(use, generation, strict=True)]
        else:
            net_import, net_export = use, [0] * SLOTS_PER_DAY
        result: dict[str, list[int]] = {}
        for register in meter.registers:
            source = net_export if register.source == "export" else net_import
            if register.tariff_rate is not None:
                low = register.tariff_rate == 1
                source = [
                    x if is_low == low else 0
                    for x, is_low in zip(source, ctx.low_tariff, strict=True)
                ]
            result[register.code] = source
        return result

    def _unit_amounts(self, unit: Unit, window: int) -> dict[Key, list[int]]:
        first, _ = self.windows[window]
        amounts: dict[Key, list[int]] = {(m.serial, r.code): [] for m, r in unit.registers()}
        for offset, ctx in enumerate(self.contexts(window)):
            away = (first + offset) in self._away[unit.key]
            for meter in unit.meters:
                for code, values in self.amounts(meter, ctx, away=away).items():
                    amounts[(meter.serial, code)].extend(values)
        return amounts

    # --- planning -------------------------------------------------------------------------

    def plan(self, *, rate: float, rng: random.Random) -> list[Anomaly]:
        """Spread anomalies over the units and windows: about `rate` per unit and 30 days, at
        most one per unit and window, each kind as evenly over the formats as they allow."""
        planned: list[Anomaly] = []
        counts: Counter[tuple[str, str]] = Counter()
        totals: Counter[str] = Counter()
        busy: set[str] = set()  # units whose values must stay untouched (a planned rollover)
        touched: set[str] = set()
        exchanged: set[str] = set()
        for window, (_, count) in enumerate(self.windows):
            chance = min(1.0, rate * count / 30.0)
            slots = self.slots(window)
            units = list(self.fleet.units)
            rng.shuffle(units)
            for unit in units:
                if unit.key in busy or rng.random() >= chance:
                    continue
                candidates = [
                    kind
                    for kind in KINDS
                    if self._applicable(kind, unit, slots, touched=unit.key in touched)
                    and not (kind == "exchange" and unit.key in exchanged)
                ]
                if not candidates:
                    continue
                kind = min(candidates, key=lambda k: (counts[k, unit.fmt], totals[k], rng.random()))
                anomaly = self._make(kind, unit, window, len(planned) + 1, rng)
                if anomaly is None:
                    continue
                planned.append(anomaly)
                counts[kind, unit.fmt] += 1
                totals[kind] += 1
                touched.add(unit.key)
                if kind == "rollover":
                    busy.add(unit.key)
                if kind == "exchange":
                    exchanged.add(unit.key)
        return planned

    @staticmethod
    def _registers_for(kind: str, unit: Unit) -> list[tuple[MeterSpec, RegisterSpec]]:
        pairs = unit.registers()
        if kind == "negative":
            return [(m, r) for m, r in pairs if not r.cumulative and r.direction == "import"]
        if kind in ("rollover", "reset", "stuck"):
            return [(m, r) for m, r in pairs if r.cumulative and r.direction == "import"]
        if kind in ("spike", "tamper", "leak", "conflict", "duplicate"):
            pairs = [(m, r) for m, r in pairs if r.direction == "import"]
            if kind == "tamper":
                return [(m, r) for m, r in pairs if r.is_main]
            if kind == "leak":
                return [(m, r) for m, r in pairs if r.is_main and m.kind == "water"]
            return pairs
        return pairs

    @staticmethod
    def _extent(kind: str, register: RegisterSpec | None) -> int:
        if kind == "gap_short":
            return SHORT_GAP_MAX + 1
        if kind == "gap_long":
            return 41
        if kind == "stuck" and register is not None:
            return register.stuck_hours * 4 + 25
        if kind == "leak":
            return 32
        return 2

    def fits(self, anomaly: Anomaly) -> bool:
        """Whether a (hand-made) anomaly lies inside its window, clear of the edges."""
        if not 0 <= anomaly.window < len(self.windows):
            return False
        extent = max(anomaly.length, self._extent(anomaly.kind, None))
        return MARGIN < anomaly.slot <= self.slots(anomaly.window) - MARGIN - extent

    def _applicable(self, kind: str, unit: Unit, slots: int, *, touched: bool) -> bool:
        if kind in ("tamper", "leak", "battery_low") and unit.fmt not in EVENT_FORMATS:
            return False
        if kind == "battery_low" and unit.fmt != "chirpstack":
            return False
        if kind in ("skew", "exchange") and not unit.cumulative:
            return False
        if kind == "rollover" and touched:
            return False
        if kind in ("gap_short", "gap_long", "skew", "exchange", "battery_low"):
            return slots - 2 * MARGIN - self._extent(kind, None) > 0
        registers = self._registers_for(kind, unit)
        return any(slots - 2 * MARGIN - self._extent(kind, r) > 0 for _, r in registers)

    def _make(
        self, kind: str, unit: Unit, window: int, number: int, rng: random.Random
    ) -> Anomaly | None:
        slots = self.slots(window)
        meter, register = unit.meters[0], None
        if kind not in ("gap_short", "gap_long", "skew", "exchange", "battery_low"):
            choices = [
                (m, r)
                for m, r in self._registers_for(kind, unit)
                if slots - 2 * MARGIN - self._extent(kind, r) > 0
            ]
            meter, register = choices[rng.randrange(len(choices))]
        if kind == "exchange":
            meter = next(m for m in unit.meters if any(r.cumulative for r in m.registers))
        if kind == "battery_low":
            meter = next(m for m in unit.meters if m.fmt == "chirpstack")
        extent = self._extent(kind, register)
        slot = rng.randint(MARGIN + 1, slots - MARGIN - extent)
        anomaly = Anomaly(
            id=number,
            kind=kind,
            unit=unit.key,
            window=window,
            slot=slot,
            serial=meter.serial,
            code=register.code if register else "",
        )
        if kind == "rollover" and register is not None:
            return self._prepare_rollover(anomaly, meter, register)
        length, amount, minutes, event = self._parameters(kind, meter, register, rng)
        return replace(anomaly, length=length, amount=amount, minutes=minutes, event=event)

    @staticmethod
    def _parameters(
        kind: str, meter: MeterSpec, register: RegisterSpec | None, rng: random.Random
    ) -> tuple[int, int, int, str]:
        """The size of an anomaly: (length in slots, amount, minutes off, event kind)."""
        scale = meter.max_rate * SLOT_SECONDS // 3600
        stuck = register.stuck_hours * 4 if register is not None else 0
        makers: dict[str, Callable[[], tuple[int, int, int, str]]] = {
            "gap_short": lambda: (rng.randint(1, SHORT_GAP_MAX), 0, 0, ""),
            "gap_long": lambda: (rng.randint(12, 40), 0, 0, ""),
            "spike": lambda: (1, scale * rng.randint(3, 8) + rng.randint(1, 999), 0, ""),
            "negative": lambda: (1, -rng.randint(10, max(11, scale // 10)), 0, ""),
            "stuck": lambda: (stuck + rng.randint(8, 24), 0, 0, ""),
            "skew": lambda: (1, 0, rng.choice((2, 4, 7, 9, 11, 13)), ""),
            "exchange": lambda: (1, 0, rng.randint(3, 12), ""),
            "conflict": lambda: (1, rng.randint(1, 50) * 7, 0, ""),
            "tamper": lambda: (1, 0, 0, rng.choice(TAMPER_KINDS)),
            "leak": lambda: (rng.randint(8, 32), rng.randint(8, 20), 0, ""),
        }
        maker = makers.get(kind)
        return maker() if maker is not None else (1, 0, 0, "")

    def _prepare_rollover(
        self, anomaly: Anomaly, meter: MeterSpec, register: RegisterSpec
    ) -> Anomaly | None:
        """Give the register few dials and a start value that rolls over at the anomaly."""
        unit = next(u for u in self.fleet.units if u.key == anomaly.unit)
        key = (meter.serial, register.code)
        series: list[int] = []
        for window in range(len(self.windows)):
            series.extend(self._unit_amounts(unit, window)[key])
        first = self.windows[anomaly.window][0] * SLOTS_PER_DAY
        end = first + self.slots(anomaly.window) - MARGIN
        at = next((i for i in range(first + anomaly.slot, end) if series[i] >= 1), None)
        if at is None:
            return None
        total = sum(series)
        factor = 1000  # kWh and m3 both hold 1000 base units
        dials = 3
        while 10**dials * factor <= total * 3 // 2 + 1:
            dials += 1
        wrap = 10**dials * factor
        initial = wrap - sum(series[:at]) - max(1, series[at] // 2)
        updated = replace(register, dials=dials, initial=initial)
        self.fleet.replace_register(meter.serial, updated)
        self._index()
        self._state[key] = _RegisterState(value=initial)
        return replace(anomaly, slot=at - first)

    def installations(self, planned: list[Anomaly], *, installed_at: dt.datetime) -> None:
        """Record the installations: each meter from `installed_at`; an exchanged meter is
        taken out between two readings and refitted, its register zeroed."""
        exchanges = {a.serial: a for a in planned if a.kind == "exchange"}
        installed = {i.meter for i in self.fleet.installations}
        for meter in self.fleet.meters():
            if meter.serial in installed:
                continue
            anomaly = exchanges.get(meter.serial)
            if anomaly is None:
                self.fleet.installations.append(
                    Installation(meter.serial, meter.service_point, installed_at)
                )
                continue
            at = self._exchange_epoch(anomaly)
            moment = dt.datetime.fromtimestamp(at, dt.UTC)
            self.fleet.installations += [
                Installation(meter.serial, meter.service_point, installed_at, moment),
                Installation(meter.serial, meter.service_point, moment),
            ]

    def slots(self, window: int) -> int:
        """The readings of a window (fewer in the last one if it ends at `until`)."""
        full = self.windows[window][1] * SLOTS_PER_DAY
        left = (self.last_epoch - self._window_first_epoch(window)) // SLOT_SECONDS + 1
        return max(0, min(full, left))

    def window_end(self, window: int) -> int:
        """The time of the window's last reading."""
        return self._window_first_epoch(window) + (self.slots(window) - 1) * SLOT_SECONDS

    def _window_first_epoch(self, window: int) -> int:
        return self.start_epoch + self.windows[window][0] * DAY_SECONDS + SLOT_SECONDS

    def _exchange_epoch(self, anomaly: Anomaly) -> int:
        reading = self._window_first_epoch(anomaly.window) + anomaly.slot * SLOT_SECONDS
        return reading - SLOT_SECONDS + anomaly.minutes * 60

    # --- one window -----------------------------------------------------------------------

    def window(
        self, unit: Unit, window: int, planned: list[Anomaly], *, resend: bool
    ) -> UnitWindow:
        """Generate a unit's readings for a window, with its anomalies, and record the key."""
        slots = self.slots(window)
        amounts = {k: v[:slots] for k, v in self._unit_amounts(unit, window).items()}
        out = UnitWindow(
            unit=unit, first_epoch=self._window_first_epoch(window), slots=slots, series={}
        )
        for anomaly in planned:
            self._amount_anomaly(anomaly, amounts, out)
        wraps: list[tuple[Key, int]] = []
        for meter, register in unit.registers():
            key = (meter.serial, register.code)
            if register.cumulative:
                out.series[key] = self._cumulate(
                    key, register, amounts[key], planned=planned, out=out, wraps=wraps
                )
            else:
                interval: list[int | None] = list(amounts[key])
                out.series[key] = interval
        for anomaly in planned:
            self._reading_anomaly(anomaly, out)
        if resend:
            self._resend(out)
        for key, slot in wraps:
            if out.series[key][slot] is not None:
                rollover = next((a.id for a in planned if a.kind == "rollover"), 0)
                self._record(KeyEntry(rollover, "rollover", *key, out.epoch(slot), rule="ROLLOVER"))
        self._statuses(out, planned)
        self._settle(out, planned)
        return out

    def _amount_anomaly(
        self, anomaly: Anomaly, amounts: dict[Key, list[int]], out: UnitWindow
    ) -> None:
        key = (anomaly.serial, anomaly.code)
        epoch = out.epoch(anomaly.slot)
        if anomaly.kind == "leak":
            series = amounts[key]
            for slot in range(anomaly.slot, anomaly.slot + anomaly.length):
                series[slot] += anomaly.amount
            self._event(anomaly, out, "leak")
        elif anomaly.kind == "negative":
            amounts[key][anomaly.slot] = anomaly.amount
            self._record(KeyEntry(anomaly.id, "negative", *key, epoch, rule="NEGATIVE"))
        elif anomaly.kind == "spike" and not self._cumulative(key):
            amounts[key][anomaly.slot] += anomaly.amount
            self._record(KeyEntry(anomaly.id, "spike", *key, epoch, rule="SPIKE"))

    def _cumulative(self, key: Key) -> bool:
        return self._specs[key].cumulative

    def _cumulate(
        self,
        key: Key,
        register: RegisterSpec,
        amounts: list[int],
        *,
        planned: list[Anomaly],
        out: UnitWindow,
        wraps: list[tuple[Key, int]],
    ) -> list[int | None]:
        """Turn amounts into register values, applying what happens to the register itself."""
        state = self._state[key]
        wrap = register.wrap
        value = state.value
        actions: dict[int, Anomaly] = {}
        frozen: range = range(0)
        for planned_one in planned:
            mine = (planned_one.serial, planned_one.code) == key
            if planned_one.kind == "stuck" and mine:
                frozen = range(planned_one.slot, planned_one.slot + planned_one.length)
            elif (planned_one.kind in ("spike", "reset") and mine) or (
                planned_one.kind == "exchange" and planned_one.serial == key[0]
            ):
                actions[planned_one.slot] = planned_one
        values: list[int | None] = [None] * len(amounts)
        for slot, amount in enumerate(amounts):
            added = 0 if slot in frozen else amount
            anomaly = actions.get(slot)
            if anomaly is not None:
                value, added = self._register_event(anomaly, key, value, amount, out.epoch(slot))
            value += added
            if wrap is not None and value >= wrap:
                value -= wrap
                wraps.append((key, slot))
            values[slot] = value
        state.value = value
        return values

    def _register_event(
        self, anomaly: Anomaly, key: Key, value: int, amount: int, epoch: int
    ) -> tuple[int, int]:
        """What a spike, reset or exchange does to a register: (new value, amount to add)."""
        if anomaly.kind == "spike":
            self._record(KeyEntry(anomaly.id, "spike", *key, epoch, rule="SPIKE"))
            return value + anomaly.amount, amount
        if anomaly.kind == "reset":
            self._record(KeyEntry(anomaly.id, "reset", *key, epoch, rule="RESET"))
            return 0, amount
        # A meter exchange: the refitted register counts from zero since it went back in.
        counted = amount * (epoch - self._exchange_epoch(anomaly)) // SLOT_SECONDS
        if counted < value:
            self._record(KeyEntry(anomaly.id, "exchange", *key, epoch, rule="METER_EXCHANGE"))
        return counted, 0

    def _event(self, anomaly: Anomaly, out: UnitWindow, kind: str) -> None:
        out.events.setdefault(anomaly.slot, []).append((anomaly.serial, kind))
        epoch = out.epoch(anomaly.slot)
        if out.unit.fmt == "chirpstack":  # an alarm's time is the uplink's, not the reading's
            epoch += uplink_delay(anomaly.serial, epoch)
        self._record(KeyEntry(anomaly.id, anomaly.kind, anomaly.serial, None, epoch, event=kind))

    def _reading_anomaly(self, anomaly: Anomaly, out: UnitWindow) -> None:
        """Anomalies of delivery: missing, extra, repeated and conflicting readings."""
        epoch = out.epoch(anomaly.slot)
        keys = list(out.series)
        if anomaly.kind in ("gap_short", "gap_long"):
            for key in keys:
                for slot in range(anomaly.slot, anomaly.slot + anomaly.length):
                    out.series[key][slot] = None
        elif anomaly.kind == "skew":
            at = epoch + anomaly.minutes * 60
            values: dict[Key, int] = {}
            for key, series in out.series.items():
                if not self._cumulative(key):
                    continue
                before, after = _known(series[anomaly.slot]), _known(series[anomaly.slot + 1])
                values[key] = before + (after - before) * anomaly.minutes // 15
                self._record(KeyEntry(anomaly.id, "skew", *key, at, rule="CLOCK_SKEW"))
            out.extras.append(Extra(at, values, "skew"))
        elif anomaly.kind in ("conflict", "duplicate"):
            target = (anomaly.serial, anomaly.code)
            carried = keys if out.unit.fmt == "dsmr" else [target]
            values = {}
            for key in carried:
                value = _known(out.series[key][anomaly.slot])
                if key == target and anomaly.kind == "conflict":
                    values[key] = value + anomaly.amount
                    self._record(KeyEntry(anomaly.id, "conflict", *key, epoch, rule="CONFLICT"))
                    self.totals["conflicts"] += 1 if self.recording else 0
                else:
                    values[key] = value
                    self._record(KeyEntry(anomaly.id, "duplicate", *key, epoch, count=1))
                    self.totals["duplicates"] += 1 if self.recording else 0
            out.extras.append(Extra(epoch, values, anomaly.kind))
        elif anomaly.kind == "tamper":
            self._event(anomaly, out, anomaly.event)
            self._record(
                KeyEntry(anomaly.id, "tamper", anomaly.serial, anomaly.code, epoch, rule="TAMPER")
            )

    def _resend(self, out: UnitWindow) -> None:
        """The head-end sends the previous window's last hour again with this window."""
        tails = {key: self._state[key].tail for key in out.series}
        epochs = sorted({epoch for tail in tails.values() for epoch, _ in tail})
        for epoch in epochs:
            values = {key: v for key, tail in tails.items() for e, v in tail if e == epoch}
            out.extras.append(Extra(epoch, values, "resend", before=True))
            for key in values:
                self._record(KeyEntry(0, "resend", *key, epoch, count=1))
                self.totals["duplicates"] += 1 if self.recording else 0

    def _statuses(self, out: UnitWindow, planned: list[Anomaly]) -> None:
        """LoRaWAN devices report their battery once a day; a low level is an event."""
        for meter in out.unit.meters:
            if meter.fmt != "chirpstack":
                continue
            offset = int(hashlib.md5(meter.serial.encode()).hexdigest()[:4], 16) % 3600  # noqa: S324
            for day in range(out.slots // SLOTS_PER_DAY):
                self._battery[meter.serial] = max(30.0, self._battery[meter.serial] - 0.02)
                epoch = out.first_epoch - SLOT_SECONDS + day * DAY_SECONDS + 12 * 3600 + offset
                out.statuses.append((epoch, meter.serial, round(self._battery[meter.serial], 1)))
        for anomaly in planned:
            if anomaly.kind == "battery_low":
                epoch = out.epoch(anomaly.slot) + 37
                out.statuses.append((epoch, anomaly.serial, 15.0))
                self._record(
                    KeyEntry(
                        anomaly.id, "battery_low", anomaly.serial, None, epoch, event="battery_low"
                    )
                )

    def _settle(self, out: UnitWindow, planned: list[Anomaly]) -> None:
        """Key the gaps and stuck registers, count the readings, carry the state over."""
        gaps = [a for a in planned if a.kind in ("gap_short", "gap_long")]
        stuck = {(a.serial, a.code): a.id for a in planned if a.kind == "stuck"}
        skews = {
            key: (e.epoch, v) for e in out.extras if e.kind == "skew" for key, v in e.values.items()
        }
        for key, series in out.series.items():
            readings = [(out.epoch(s), v) for s, v in enumerate(series) if v is not None]
            for gap in gaps:
                before, after = _known(series[gap.slot - 1]), _known(series[gap.slot + gap.length])
                if gap.kind == "gap_long":
                    epoch = out.epoch(gap.slot + gap.length)
                    self._record(KeyEntry(gap.id, "gap_long", *key, epoch, rule="GAP"))
                    continue
                steps = gap.length + 1
                for k in range(1, steps):
                    epoch = out.epoch(gap.slot + k - 1)
                    estimate = before + _round_half_away((after - before) * k, steps)
                    readings.append((epoch, estimate))
                    self._record(KeyEntry(gap.id, "gap_short", *key, epoch, rule="ESTIMATED"))
                    self.totals["estimated"] += 1 if self.recording else 0
            if key in skews:
                readings.append(skews[key])
            readings.sort()
            self.totals["readings"] += len(readings) if self.recording else 0
            state = self._state[key]
            if self._cumulative(key):
                self._mirror_stuck(key, readings, state, stuck.get(key))
            state.tail = [(e, v) for e, v in readings[-4:]]

    def _mirror_stuck(
        self, key: Key, readings: list[tuple[int, int]], state: _RegisterState, anomaly: int | None
    ) -> None:
        """The readings the stuck rule flags: unchanged for the register's stuck hours."""
        limit = self._specs[key].stuck_hours * 3600
        for epoch, value in readings:
            if state.last_value is None or value != state.last_value:
                state.last_change = epoch
            elif epoch - state.last_change >= limit:
                kind = "stuck" if anomaly is not None else "stuck_natural"
                self._record(KeyEntry(anomaly or 0, kind, *key, epoch, rule="STUCK"))
            state.last_value = value

    def _record(self, entry: KeyEntry) -> None:
        if self.recording:
            self.sink(entry)
            if entry.event:
                self.events.add((entry.serial, entry.event, entry.epoch))
