"""manage.py mqtt_ingest against the real Mosquitto and PostgreSQL.

Every test has its own client id and topic prefix (xdist workers share the broker) and removes
its broker session at the end. Messages are published while the subscriber is away, into the
persistent session an earlier run created: the run that follows gets exactly those, so a test
never races the subscription.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from meters.ingest import pipeline
from meters.ingest.live import MAX_BODY_BYTES, Ignore, Keep, Reject, chirpstack_message
from meters.management.commands.mqtt_ingest import _store
from meters.models import ImportBatch, InboundMessage, Meter, Register
from meters.services import inbound as inbound_services
from tests.factories import SYSTEM
from tests.meters.helpers import readings

ROOT = Path(__file__).resolve().parents[2]
DEV_EUI = "0102030405060708"
APPLICATION = "b1a1c5a2-3f5e-4d7a-9c61-0c6c1d3b9a10"
EXIT_TIMEOUT = 60.0


# --- ChirpStack v4 events (JSON mapping of tests/data/chirpstack/integration.proto) ----------


def _device(dev_eui: str) -> dict[str, Any]:
    return {
        "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
        "tenantName": "ChirpStack",
        "applicationId": APPLICATION,
        "applicationName": "water meters",
        "deviceProfileId": "0b1e2f34-5a6b-4c7d-8e9f-a0b1c2d3e4f5",
        "deviceProfileName": "water meter class A",
        "deviceName": f"meter {dev_eui}",
        "devEui": dev_eui.lower(),
        "tags": {},
    }


def uplink(dedup: str, when: str, decoded: dict[str, Any], dev_eui: str = DEV_EUI) -> bytes:
    """An UplinkEvent as ChirpStack's MQTT integration publishes it (json=true)."""
    return json.dumps(
        {
            "deduplicationId": dedup,
            "time": when,
            "deviceInfo": _device(dev_eui),
            "devAddr": "00f3a1b2",
            "adr": True,
            "dr": 5,
            "fCnt": 42,
            "fPort": 1,
            "confirmed": False,
            "data": base64.b64encode(b"\x01\x02\x03\x04").decode(),
            "object": decoded,
            "rxInfo": [
                {
                    "gatewayId": "0016c001ff10a235",
                    "uplinkId": 4217106255,
                    "time": when,
                    "rssi": -57,
                    "snr": 10.5,
                    "context": "EFwMtA==",
                    "metadata": {"region_config_id": "eu868", "region_common_name": "EU868"},
                    "crcStatus": "CRC_OK",
                }
            ],
            "txInfo": {
                "frequency": 868100000,
                "modulation": {
                    "lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}
                },
            },
        }
    ).encode()


def status(dedup: str, when: str, battery: float, dev_eui: str = DEV_EUI) -> bytes:
    """A StatusEvent: ChirpStack gives it the deduplicationId of the uplink that carried it."""
    return json.dumps(
        {
            "deduplicationId": dedup,
            "time": when,
            "deviceInfo": _device(dev_eui),
            "margin": 7,
            "externalPowerSource": False,
            "batteryLevelUnavailable": False,
            "batteryLevel": battery,
        }
    ).encode()


def join(dev_eui: str = DEV_EUI) -> bytes:
    return json.dumps(
        {
            "deduplicationId": str(uuid.uuid4()),
            "time": "2026-10-01T09:00:00Z",
            "deviceInfo": _device(dev_eui),
            "devAddr": "00f3a1b2",
        }
    ).encode()


# --- The pure classification -----------------------------------------------------------------

TOPIC = f"application/{APPLICATION}/device/{DEV_EUI}/event/"


def test_up_and_status_are_kept_with_their_deduplication_id() -> None:
    dedup = str(uuid.uuid4())
    up = chirpstack_message(TOPIC + "up", uplink(dedup, "2026-10-01T10:00:00Z", {"value": 1}))
    st = chirpstack_message(TOPIC + "status", status(dedup, "2026-10-01T10:00:00Z", 80.0))
    assert isinstance(up, Keep) and isinstance(st, Keep)
    assert (up.event, up.key, up.payload["fCnt"]) == ("up", dedup, 42)
    assert (st.event, st.key, st.payload["batteryLevel"]) == ("status", dedup, 80.0)


@pytest.mark.parametrize("event", ["join", "ack", "txack", "log", "location", "integration"])
def test_other_events_are_ignored_whatever_they_contain(event: str) -> None:
    assert chirpstack_message(TOPIC + event, b"\x00 not even json") == Ignore(event)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\x0a\x24\x35\x66\xff\xfe", "not UTF-8"),  # the protobuf encoding (json=false)
        (b"[1, 2]", "not a JSON object"),
        (b'{"time": "2026-10-01T10:00:00Z"}', "no deduplicationId"),
        (b'{"deduplicationId": ""}', "no deduplicationId"),
        (b'{"deduplicationId": 7}', "no deduplicationId"),
        (json.dumps({"deduplicationId": "x" * 101}).encode(), "longer than"),
        (b'{"deduplicationId": "a", "object": {"value": NaN}}', "not JSON"),
        (b'{"deduplicationId": "a", "object": {"value": 1e999}}', "out of range"),
        (b'{"deduplicationId": "a", "deviceInfo": {"deviceName": "x\\u0000"}}', "NUL"),
        (b'{"deduplicationId": "a", "deviceInfo": {"deviceName": "\\ud800"}}', "surrogate"),
        (b'{"deduplicationId": "a", "o": ' + b"[" * 100 + b"]" * 100 + b"}", "deeply"),
        (b'{"deduplicationId": "a", "o": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "not JSON"),
        (b'{"deduplicationId": "a", "pad": "' + b"x" * MAX_BODY_BYTES + b'"}', "bytes, more"),
    ],
)
def test_messages_that_cannot_be_stored_are_rejected_with_a_reason(
    body: bytes, reason: str
) -> None:
    verdict = chirpstack_message(TOPIC + "up", body)
    assert isinstance(verdict, Reject)
    assert reason in verdict.reason


# --- The broker side -------------------------------------------------------------------------


@dataclass(frozen=True)
class Ids:
    client_id: str
    prefix: str

    @property
    def subscription(self) -> str:
        return f"{self.prefix}/application/+/device/+/event/+"

    def topic(self, event: str, dev_eui: str = DEV_EUI) -> str:
        return f"{self.prefix}/application/{APPLICATION}/device/{dev_eui}/event/{event}"


def _client(client_id: str = "") -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)


def _forget_session(client_id: str) -> None:
    """Remove the broker's session of `client_id`: a clean start that expires at once."""
    client = _client(client_id)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0
    client.connect(settings.MQTT_HOST, settings.MQTT_PORT, clean_start=True, properties=properties)
    client.loop_start()
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def ids() -> Iterator[Ids]:
    try:
        socket.create_connection((settings.MQTT_HOST, settings.MQTT_PORT), timeout=2).close()
    except OSError as error:
        pytest.fail(
            f"Mosquitto does not answer on {settings.MQTT_HOST}:{settings.MQTT_PORT} ({error}); "
            "start it: mosquitto -d -c /etc/mosquitto/mosquitto.conf"
        )
    token = uuid.uuid4().hex[:12]
    found = Ids(client_id=f"smtest-{token}", prefix=f"smtest/{token}")
    yield found
    _forget_session(found.client_id)


def publish(messages: list[tuple[str, bytes]]) -> None:
    """Publish with QoS 1 and wait for the broker's PUBACK: then it has queued each one."""
    client = _client()
    client.connect(settings.MQTT_HOST, settings.MQTT_PORT)
    client.loop_start()
    try:
        infos = [client.publish(topic, body, qos=1) for topic, body in messages]
        for info in infos:
            info.wait_for_publish(timeout=10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def ingest(ids: Ids, *args: str) -> dict[str, int]:
    """Run the command here (in the test's transaction); return its summary."""
    out = io.StringIO()
    call_command(
        "mqtt_ingest",
        "--client-id",
        ids.client_id,
        "--topic",
        ids.subscription,
        "--session-expiry",
        "600",
        # A safety net: a message that never comes ends the run instead of hanging the test.
        "--idle-exit",
        "5",
        *args,
        stdout=out,
    )
    summary: dict[str, int] = json.loads(out.getvalue().strip().splitlines()[-1])
    return summary


def _summary(received: int = 0, stored: int = 0, duplicates: int = 0, **rest: int) -> Any:
    return {
        "received": received,
        "stored": stored,
        "duplicates": duplicates,
        "ignored": rest.get("ignored", 0),
        "rejected": rest.get("rejected", 0),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("batch_size", ["1", "500"])
def test_the_same_deduplication_id_is_stored_once(ids: Ids, batch_size: str) -> None:
    ingest(ids, "--idle-exit", "0.2")  # creates the persistent session
    dedup = str(uuid.uuid4())
    up = uplink(dedup, "2026-10-01T10:00:00Z", {"value": 12.345, "unit": "m3"})
    publish(
        [
            (ids.topic("up"), up),
            (ids.topic("up"), up),  # ChirpStack retried, or a second integration instance
            (ids.topic("status"), status(dedup, "2026-10-01T10:00:00Z", 90.0)),
        ]
    )
    first = ingest(ids, "--max-messages", "3", "--batch-size", batch_size)
    assert first == _summary(received=3, stored=2, duplicates=1)
    publish([(ids.topic("up"), up)])  # and again, much later
    assert ingest(ids, "--max-messages", "1") == _summary(received=1, duplicates=1)
    assert sorted(InboundMessage.objects.values_list("event", "dedup_key", "source")) == [
        ("status", f"status:{dedup}", "mqtt"),
        ("up", f"up:{dedup}", "mqtt"),
    ]
    assert InboundMessage.objects.get(event="up").payload["fCnt"] == 42


@pytest.mark.django_db
def test_a_poison_message_is_counted_acked_and_does_not_block_the_next_ones(
    ids: Ids, caplog: pytest.LogCaptureFixture
) -> None:
    ingest(ids, "--idle-exit", "0.2")
    good = [str(uuid.uuid4()) for _ in range(2)]
    publish(
        [
            (ids.topic("up"), uplink(good[0], "2026-10-01T10:00:00Z", {"value": 1, "unit": "m3"})),
            (ids.topic("up"), b"this is not JSON"),
            (ids.topic("up"), b'{"time": "2026-10-01T10:00:00Z"}'),
            (ids.topic("up"), b'{"deduplicationId": "n", "object": {"n": "\\u0000"}}'),
            (ids.topic("join"), join()),
            (ids.topic("up"), uplink(good[1], "2026-10-01T11:00:00Z", {"value": 2, "unit": "m3"})),
        ]
    )
    # One batch for all six, flushed at exit: the poison ones are acked with the good ones.
    summary = ingest(ids, "--max-messages", "6", "--flush-seconds", "60")
    assert summary == _summary(received=6, stored=2, ignored=1, rejected=3)
    assert set(InboundMessage.objects.values_list("dedup_key", flat=True)) == {
        f"up:{key}" for key in good
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("rejected and acknowledged: not JSON" in w for w in warnings)
    assert any("rejected and acknowledged: no deduplicationId" in w for w in warnings)
    # Everything was acknowledged: nothing comes again.
    assert ingest(ids, "--idle-exit", "0.5") == _summary()


@pytest.mark.django_db
def test_what_the_database_refuses_is_set_aside_and_the_rest_stored() -> None:
    stored = _store(
        [
            Keep("up", "db-refuses", {"deviceInfo": {"deviceName": "a\x00b"}}),
            Keep("up", "fine", {"deviceInfo": {"devEui": DEV_EUI}}),
            Keep("up", "fine", {"deviceInfo": {"devEui": DEV_EUI}}),
        ]
    )
    assert stored == (1, 1, 1)  # stored, duplicates, refused
    assert list(InboundMessage.objects.values_list("dedup_key", flat=True)) == ["up:fine"]


@pytest.mark.django_db
def test_stored_messages_become_one_import_batch_that_inserts_the_readings(ids: Ids) -> None:
    meter = Meter.objects.create(serial="W-MQTT-1", kind="water", dev_eui=DEV_EUI, max_rate=5000)
    Register.objects.create(meter=meter, code="import", unit="L", is_main=True)
    ingest(ids, "--idle-exit", "0.2")
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    publish(
        [
            (
                ids.topic("up"),
                uplink(
                    first, "2026-10-01T10:00:00Z", {"readings": [{"value": 12.345, "unit": "m3"}]}
                ),
            ),
            (
                ids.topic("up"),
                uplink(second, "2026-10-01T11:00:00Z", {"value": 12.4, "unit": "m3"}),
            ),
            (ids.topic("status"), status(second, "2026-10-01T11:00:00Z", 55.5)),
        ]
    )
    assert ingest(ids, "--max-messages", "3") == _summary(received=3, stored=3)

    assert inbound_services.inbound_flush(actor=SYSTEM, as_of=timezone.now()) == 3
    batch = ImportBatch.objects.get()
    assert (batch.source, batch.format, batch.status) == ("mqtt", "chirpstack", "queued")
    assert set(InboundMessage.objects.values_list("batch", flat=True)) == {batch.pk}
    pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=timezone.now())
    batch.refresh_from_db()
    assert (batch.status, batch.seen, batch.inserted, batch.rejected) == ("done", 2, 2, 0)
    assert [r["value"] for r in readings("W-MQTT-1")] == [12_345, 12_400]
    meter.refresh_from_db()
    assert meter.battery_percent == 56


# --- Real processes: the persistent session and a graceful stop --------------------------------


def _command(ids: Ids, *args: str) -> subprocess.Popen[str]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "LOG_LEVEL": "INFO",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "mqtt_ingest",
            "--client-id",
            ids.client_id,
            "--topic",
            ids.subscription,
            "--session-expiry",
            "600",
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> dict[str, int]:
    try:
        out, err = process.communicate(timeout=EXIT_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    summary: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return summary


@pytest.mark.slow
def test_messages_published_while_the_subscriber_was_down_arrive_when_it_returns(
    transactional_db: None, ids: Ids
) -> None:
    # The first run only creates the session (and the subscription in it), then exits.
    assert _finish(_command(ids, "--idle-exit", "0.5")) == _summary()
    keys = [str(uuid.uuid4()) for _ in range(3)]
    publish(
        [
            (ids.topic("up"), uplink(key, "2026-10-01T10:00:00Z", {"value": n, "unit": "m3"}))
            for n, key in enumerate(keys)
        ]
    )
    summary = _finish(_command(ids, "--max-messages", "3", "--idle-exit", "10"))
    assert summary == _summary(received=3, stored=3)
    assert set(InboundMessage.objects.values_list("dedup_key", flat=True)) == {
        f"up:{key}" for key in keys
    }


@pytest.mark.slow
def test_sigterm_stores_and_acks_what_was_received_then_disconnects(
    transactional_db: None, ids: Ids
) -> None:
    ingest(ids, "--idle-exit", "0.2")  # the session, created in-process to save a start-up
    keys = [str(uuid.uuid4()) for _ in range(3)]
    publish(
        [
            (ids.topic("up"), uplink(key, "2026-10-01T10:00:00Z", {"value": n, "unit": "m3"}))
            for n, key in enumerate(keys)
        ]
    )
    # Nothing is flushed on its own during this run: only the stop can store them.
    process = _command(ids, "--flush-seconds", "3600")
    subscribed = threading.Event()
    stderr_lines: list[str] = []

    def watch(stream: IO[str]) -> None:
        # The broker sends a resumed session's queued messages before it answers SUBSCRIBE,
        # so once this is logged, paho has handed all three over.
        for line in stream:
            stderr_lines.append(line)
            if "MQTT subscribed to" in line:
                subscribed.set()

    assert process.stderr is not None
    reader = threading.Thread(target=watch, args=(process.stderr,), daemon=True)
    reader.start()
    try:
        assert subscribed.wait(timeout=EXIT_TIMEOUT), "".join(stderr_lines)
        assert InboundMessage.objects.count() == 0
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=EXIT_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=5)
    assert process.returncode == 0, "".join(stderr_lines)
    assert process.stdout is not None
    assert json.loads(process.stdout.read().strip().splitlines()[-1]) == _summary(
        received=3, stored=3
    )
    assert InboundMessage.objects.count() == 3
    # They were acknowledged before the disconnect: the session holds nothing more.
    assert ingest(ids, "--idle-exit", "0.5") == _summary()
