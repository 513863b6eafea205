"""ChirpStack v4's HTTP integration: uplinks and status events, deduplicated, then batched."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from meters.ingest import pipeline
from meters.models import ImportBatch, InboundMessage, Meter, Register
from meters.services import inbound as inbound_services
from tests.factories import SYSTEM
from tests.meters.helpers import readings

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("token")]
URL = "/integrations/chirpstack/"
TOKEN = "chirpstack-shared-secret-for-tests"


@pytest.fixture
def token() -> Any:
    with override_settings(CHIRPSTACK_INTEGRATION_TOKEN=TOKEN):
        yield


def _client(token: str = TOKEN) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def _up(dedup: str, when: str, value: float) -> dict[str, Any]:
    return {
        "deduplicationId": dedup,
        "time": when,
        "deviceInfo": {"devEui": "a1b2c3d4e5f60708", "deviceName": "Water 7"},
        "fCnt": 12,
        "fPort": 2,
        "object": {"readings": [{"value": value, "unit": "m3", "time": when}]},
    }


def _post(client: Client, event: str, body: Any, **extra: Any) -> Any:
    payload = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(
        f"{URL}?event={event}", payload, content_type=extra.pop("ct", "application/json"), **extra
    )


def test_uplinks_and_status_are_kept_once_and_imported_in_one_batch() -> None:
    meter = Meter.objects.create(
        serial="W7", kind="water", dev_eui="a1b2c3d4e5f60708", max_rate=5_000
    )
    Register.objects.create(meter=meter, code="import", unit="L", is_main=True)
    client = _client()
    assert _post(client, "up", _up("u1", "2026-10-01T10:00:00Z", 5.5)).status_code == 202
    assert _post(client, "up", _up("u1", "2026-10-01T10:00:00Z", 5.5)).status_code == 200
    assert _post(client, "up", _up("u2", "2026-10-01T11:00:00Z", 5.6)).status_code == 202
    status_event = {
        "deduplicationId": "u2",  # ChirpStack reuses the uplink's id for its status event
        "time": "2026-10-01T11:00:01Z",
        "deviceInfo": {"devEui": "a1b2c3d4e5f60708"},
        "batteryLevel": 64.0,
        "margin": 9,
    }
    assert _post(client, "status", status_event).status_code == 202
    assert _post(client, "join", {"deduplicationId": "j1"}).status_code == 204
    assert InboundMessage.objects.count() == 3

    taken = inbound_services.inbound_flush(actor=SYSTEM, as_of=timezone.now())
    assert taken == 3
    batch = ImportBatch.objects.get()
    assert (batch.source, batch.format) == ("chirpstack", "chirpstack")
    pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=timezone.now())
    batch.refresh_from_db()
    assert (batch.status, batch.inserted) == ("done", 2), list(
        batch.row_errors.values_list("message", flat=True)
    )
    assert [r["value"] for r in readings("W7")] == [5_500, 5_600]
    meter.refresh_from_db()
    assert meter.battery_percent == 64
    assert meter.last_contact_at == dt.datetime(2026, 10, 1, 11, 0, 1, tzinfo=dt.UTC)
    # Flushed messages are not taken again, and are forgotten after a while.
    assert inbound_services.inbound_flush(actor=SYSTEM, as_of=timezone.now()) == 0
    assert inbound_services.inbound_purge(before=timezone.now() - dt.timedelta(days=7)) == 0
    assert inbound_services.inbound_purge(before=timezone.now() + dt.timedelta(seconds=1)) == 3


def test_requests_without_the_secret_are_refused() -> None:
    body = _up("u1", "2026-10-01T10:00:00Z", 1)
    response = _post(Client(), "up", body)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"
    assert _post(_client("wrong"), "up", body).status_code == 401
    with override_settings(CHIRPSTACK_INTEGRATION_TOKEN=None):
        assert _post(_client(), "up", body).status_code == 404
    assert not InboundMessage.objects.exists()


def test_malformed_events_get_clear_errors() -> None:
    client = _client()
    assert _post(client, "bogus", {}).json()["error"].startswith("Unknown event type")
    response = _post(client, "up", b"\x08\x01", ct="application/octet-stream")
    assert response.status_code == 415 and "marshaler to JSON" in response.json()["error"]
    assert _post(client, "up", "{not json").json()["error"] == "The body is not valid JSON."
    response = _post(client, "up", {"time": "2026-10-01T10:00:00Z"})
    assert response.status_code == 400 and "deduplicationId" in response.json()["error"]
    big = {"deduplicationId": "b", "pad": "x" * 300_000}
    assert _post(client, "up", big).status_code == 413
    assert client.get(f"{URL}?event=up").status_code == 405
    assert not InboundMessage.objects.exists()
