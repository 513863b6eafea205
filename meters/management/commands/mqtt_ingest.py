"""manage.py mqtt_ingest: keep ChirpStack v4 events from MQTT until they are batched.

Subscribes (MQTT v5, QoS 1) to ChirpStack's event topic and stores every `up` and `status`
event with `inbound_store`; the beat task `inbound_flush` turns what was stored into import
batches. Other event types are acknowledged and dropped; a message that cannot be stored (not
JSON, no deduplicationId, too large) is logged, counted and acknowledged, so it cannot block
the ones behind it.

Nothing is lost: the session is persistent (a stable client id, clean_start=False and a session
expiry), so the broker queues what arrives while this command is down, and a message is
acknowledged only after the transaction that stored it committed, so a crash before that means
the broker delivers it again (and its deduplicationId makes the second copy harmless).

paho's network loop runs in its own thread and only queues what arrives; the database work is
done here, one `inbound_store` per --batch-size messages or per --flush-seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, DataError, connection, transaction
from django.utils import timezone
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from meters.ingest.live import Ignore, Keep, Reject, chirpstack_message
from meters.models import ImportBatch
from meters.services import inbound as inbound_services

logger = logging.getLogger(__name__)

RECEIVE_MAXIMUM_LIMIT = 65535  # the largest value MQTT v5 can carry


@dataclass(frozen=True, slots=True)
class Delivery:
    """One PUBLISH as paho handed it over; `connection` tells which connection its mid is of."""

    connection: int
    mid: int
    qos: int
    topic: str
    body: bytes


@dataclass(slots=True)
class Counts:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    ignored: int = 0
    rejected: int = 0


class Subscriber:
    """The paho side. Its callbacks run in paho's network thread and only hand messages over."""

    def __init__(
        self,
        *,
        client_id: str,
        topic: str,
        session_expiry: int,
        receive_maximum: int,
    ) -> None:
        self.topic = topic
        self.deliveries: queue.Queue[Delivery] = queue.Queue()
        self.subscribed = threading.Event()
        self.failure: str | None = None
        self._session_expiry = session_expiry
        self._receive_maximum = receive_maximum
        # A mid is only meaningful on the connection it arrived on; acking a stale one after a
        # reconnect could acknowledge a different message. The lock keeps a connection change
        # from slipping between the check and the ack.
        self._connection = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        username = settings.MQTT_USERNAME
        if username:
            self.client.username_pw_set(username, settings.MQTT_PASSWORD)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def start(self, host: str, port: int, keepalive: int) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # Without an expiry the broker drops the session (and what it queued) on disconnect,
        # clean_start=False notwithstanding.
        properties.SessionExpiryInterval = self._session_expiry
        # Every message stays unacknowledged until its batch is stored, and without this
        # Mosquitto sends only 20 unacknowledged messages (max_inflight_messages), which would
        # make batches of 20. A wide window also keeps a backlog in flight, where Mosquitto
        # keeps it, rather than in its per-client queue, which drops what exceeds
        # max_queued_messages (1000 by default) even while we are connected.
        properties.ReceiveMaximum = self._receive_maximum
        self.client.connect_async(
            host, port, keepalive=keepalive, clean_start=False, properties=properties
        )
        # loop_start retries the first connection too, so a broker that is not up yet is fine.
        self.client.loop_start()

    def stop(self) -> None:
        # A normal DISCONNECT keeps the session (its expiry came with CONNECT): whatever is
        # still unacknowledged is delivered again on the next start.
        self.client.disconnect()
        self.client.loop_stop()

    def ack(self, deliveries: list[Delivery]) -> int:
        """Acknowledge, in arrival order; return how many could be (the rest come again)."""
        acked = 0
        with self._lock:
            for delivery in deliveries:
                if delivery.connection == self._connection:
                    self.client.ack(delivery.mid, delivery.qos)
                    acked += 1
        return acked

    def _next_connection(self) -> None:
        with self._lock:
            self._connection += 1

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.warning("MQTT broker refused the connection: %s", reason_code)
            return
        self._next_connection()
        logger.info("MQTT connected (session present: %s)", flags.session_present)
        # Even with the session present: it may have been created for another topic, and
        # subscribing again is harmless (queued messages are kept).
        client.subscribe(self.topic, qos=1)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho keeps retrying (reconnect_delay_set); say so, or a broker that is down looks
        # like a quiet night.
        logger.warning("MQTT broker unreachable; retrying")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._next_connection()
        if reason_code.is_failure:
            logger.warning("MQTT connection lost (%s); reconnecting", reason_code)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        failed = [str(code) for code in reason_codes if code.is_failure]
        if failed:
            self.failure = f"the broker refused the subscription to {self.topic}: {failed}"
        else:
            logger.info("MQTT subscribed to %s", self.topic)
            self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.deliveries.put(
            Delivery(
                self._connection, message.mid, message.qos, message.topic, bytes(message.payload)
            )
        )


class Command(BaseCommand):
    help = (
        "Subscribe to ChirpStack v4 MQTT events and store up/status events for import "
        "(runs until SIGTERM/SIGINT, --max-messages or --idle-exit)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.MQTT_HOST)
        parser.add_argument("--port", type=int, default=settings.MQTT_PORT)
        parser.add_argument("--topic", default=settings.MQTT_TOPIC)
        parser.add_argument(
            "--client-id",
            default="smartmeter-ingest",
            help="stable id of the persistent session; one per running subscriber",
        )
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--flush-seconds", type=float, default=1.0)
        parser.add_argument(
            "--session-expiry",
            type=int,
            default=86_400,
            help="seconds the broker keeps the session (and queues messages) while we are away",
        )
        parser.add_argument("--keepalive", type=int, default=60)
        parser.add_argument(
            "--receive-maximum",
            type=int,
            help="unacknowledged messages the broker may send at once (default and most: 65535)",
        )
        parser.add_argument("--max-messages", type=int, help="exit after this many messages")
        parser.add_argument(
            "--idle-exit",
            type=float,
            help="exit after this many seconds without a message (counted once subscribed)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size: int = options["batch_size"]
        if batch_size < 1 or options["flush_seconds"] <= 0:
            raise CommandError("--batch-size and --flush-seconds must be positive")
        self.counts = Counts()
        self.subscriber = Subscriber(
            client_id=options["client_id"],
            topic=options["topic"],
            session_expiry=options["session_expiry"],
            receive_maximum=options["receive_maximum"] or RECEIVE_MAXIMUM_LIMIT,
        )
        stop = threading.Event()
        restore = _on_signals(stop)
        self.subscriber.start(options["host"], options["port"], options["keepalive"])
        try:
            self._run(stop, options)
        finally:
            self.subscriber.stop()
            restore()
            self.stdout.write(json.dumps(dataclasses.asdict(self.counts)))

    def _run(self, stop: threading.Event, options: dict[str, Any]) -> None:
        max_messages: int | None = options["max_messages"]
        idle_exit: float | None = options["idle_exit"]
        self.pending: list[tuple[Delivery, Keep | Ignore | Reject]] = []
        self.oldest = last_activity = time.monotonic()
        self.retry_at, self.backoff = 0.0, 1.0
        subscribed = False
        while not stop.is_set() and not self._reached(max_messages):
            if self.subscriber.failure:
                raise CommandError(self.subscriber.failure)
            try:
                delivery = self.subscriber.deliveries.get(timeout=0.05)
            except queue.Empty:
                delivery = None
            now = time.monotonic()
            if delivery is not None:
                self._take(delivery, now)
                last_activity = now
            if not subscribed and self.subscriber.subscribed.is_set():
                # Idle time counts from the subscription, so that --idle-exit cannot end the
                # run before the session even exists.
                subscribed, last_activity = True, now
            self._flush_if_due(now, options["batch_size"], options["flush_seconds"])
            if idle_exit is not None and subscribed and now - last_activity >= idle_exit:
                break
        if stop.is_set():
            # What paho already received is part of the buffer: store and ack it too, still
            # batch by batch.
            while not self._reached(max_messages):
                try:
                    self._take(self.subscriber.deliveries.get_nowait(), time.monotonic())
                except queue.Empty:
                    break
                if len(self.pending) >= options["batch_size"] and self._flush():
                    self.pending = []
        if self.pending and not self._flush():
            raise CommandError(
                f"{len(self.pending)} messages could not be stored; "
                "the broker will deliver them again"
            )

    def _reached(self, max_messages: int | None) -> bool:
        return max_messages is not None and self.counts.received >= max_messages

    def _flush_if_due(self, now: float, batch_size: int, flush_seconds: float) -> None:
        due = len(self.pending) >= batch_size or now - self.oldest >= flush_seconds
        if not self.pending or not due or now < self.retry_at:
            return
        if self._flush():
            self.pending, self.backoff = [], 1.0
        else:
            self.retry_at, self.backoff = now + self.backoff, min(self.backoff * 2, 30.0)

    def _take(self, delivery: Delivery, now: float) -> None:
        if not self.pending:
            self.oldest = now
        self.counts.received += 1
        verdict = chirpstack_message(delivery.topic, delivery.body)
        if isinstance(verdict, Ignore):
            self.counts.ignored += 1
        elif isinstance(verdict, Reject):
            self.counts.rejected += 1
            logger.warning(
                "MQTT message on %s rejected and acknowledged: %s", delivery.topic, verdict.reason
            )
        self.pending.append((delivery, verdict))

    def _flush(self) -> bool:
        """Store the kept messages, then ack everything; False (nothing acked) on a DB error."""
        pending = self.pending
        keep = [verdict for _, verdict in pending if isinstance(verdict, Keep)]
        try:
            stored, duplicates, refused = _store(keep)
        except DatabaseError:
            logger.exception("storing %d MQTT messages failed; retrying", len(keep))
            # A broken connection stays broken until closed; the next attempt opens a new one.
            connection.close()
            return False
        self.counts.stored += stored
        self.counts.duplicates += duplicates
        self.counts.rejected += refused
        acked = self.subscriber.ack([delivery for delivery, _ in pending])
        if acked < len(pending):
            logger.info(
                "%d messages arrived before a reconnect; the broker sends them again",
                len(pending) - acked,
            )
        return True


def _store(messages: list[Keep]) -> tuple[int, int, int]:
    """Store messages in one transaction; return (stored, duplicates, refused)."""
    if not messages:
        return 0, 0, 0
    received_at = timezone.now()
    refused = 0
    try:
        with transaction.atomic():
            stored = _inbound_store(messages, received_at)
    except DataError:
        # Something PostgreSQL refuses that the checks in meters.ingest.live did not foresee:
        # find the culprit one by one (a savepoint each) rather than letting it block every
        # message after it.
        stored = 0
        with transaction.atomic():
            for message in messages:
                try:
                    with transaction.atomic():
                        stored += _inbound_store([message], received_at)
                except DataError as error:
                    refused += 1
                    logger.warning(
                        "MQTT %s message %s refused by the database and acknowledged: %s",
                        message.event,
                        message.key,
                        error,
                    )
    return stored, len(messages) - stored - refused, refused


def _inbound_store(messages: list[Keep], received_at: dt.datetime) -> int:
    return inbound_services.inbound_store(
        source=ImportBatch.Source.MQTT,
        messages=[(m.event, m.key, m.payload) for m in messages],
        received_at=received_at,
    )


def _on_signals(stop: threading.Event) -> Callable[[], None]:
    """Make SIGTERM/SIGINT end the run gracefully; return a function restoring the old ones.

    Only the main thread may install handlers (tests run the command in a thread).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
