"""The machine endpoints answer 429 with Retry-After past their per-minute allowance.

Each test sets a tiny allowance and a window of an hour, so a slow machine cannot let a window
run out between two requests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client, override_settings

from meters.models import Meter, Register
from meters.views import ChirpStackIntegrationView
from portal.tenancy.api import throttles
from portal.tenancy.services.api_keys import api_key_create
from tests.conftest import World
from tests.factories import SYSTEM

pytestmark = pytest.mark.django_db
WINDOW = 3600
CHIRPSTACK_TOKEN = "chirpstack-shared-secret-for-tests"


def _key_client(world: World, name: str) -> Client:
    _api_key, key = api_key_create(organisation=world.sub1, name=name, actor=SYSTEM)
    return Client(HTTP_AUTHORIZATION=f"Api-Key {key}")


def _send_readings(client: Client) -> Any:
    body = {"readings": [{"meter": "T1", "timestamp": "2026-03-01T00:15:00Z", "value": 1.5}]}
    return client.post("/api/v1/readings/", json.dumps(body), content_type="application/json")


@override_settings(MACHINE_API_RATE_PER_MINUTE=2)
def test_bulk_readings_are_throttled_per_api_key(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(throttles, "WINDOW_SECONDS", WINDOW)
    meter = Meter.objects.create(
        serial="T1", kind="electricity", organisation=world.sub1, max_rate=50_000
    )
    Register.objects.create(meter=meter, code="import", unit="Wh", is_main=True)
    client = _key_client(world, "head-end")
    statuses = [_send_readings(client).status_code for _ in range(2)]
    assert statuses == [202, 200]  # the second is the same body again
    throttled = _send_readings(client)
    assert throttled.status_code == 429
    assert throttled["Retry-After"] == str(WINDOW)
    # Another key of the same organisation has its own allowance.
    assert _send_readings(_key_client(world, "other head-end")).status_code == 200
    # So does another endpoint of the same key: polling does not spend the upload allowance.
    assert client.get("/api/v1/readings/batches/").status_code == 200


def _chirpstack_post(token: str) -> Any:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}").post(
        "/integrations/chirpstack/?event=join", json.dumps({}), content_type="application/json"
    )


@override_settings(CHIRPSTACK_INTEGRATION_TOKEN=CHIRPSTACK_TOKEN, CHIRPSTACK_RATE_PER_MINUTE=2)
def test_the_chirpstack_integration_is_throttled_after_its_token_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ChirpStackIntegrationView, "rate_window_seconds", WINDOW)
    # Strangers are refused before the counter: they cannot spend the integration's allowance.
    assert [_chirpstack_post("wrong").status_code for _ in range(3)] == [401] * 3
    assert [_chirpstack_post(CHIRPSTACK_TOKEN).status_code for _ in range(2)] == [204, 204]
    throttled = _chirpstack_post(CHIRPSTACK_TOKEN)
    assert throttled.status_code == 429
    assert throttled["Retry-After"] == str(WINDOW)
