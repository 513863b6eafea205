"""The JSON bulk endpoint for head-end systems, authenticated by an organisation's API key."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from meters.ingest import pipeline
from meters.models import ImportBatch, Meter, Register
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from portal.tenancy.models import Organisation
from portal.tenancy.services.api_keys import api_key_create, api_key_revoke
from tests.conftest import World
from tests.factories import SYSTEM
from tests.meters.helpers import readings

pytestmark = pytest.mark.django_db
URL = "/api/v1/readings/"


def _meter(serial: str, organisation: Organisation | None) -> Meter:
    meter = Meter.objects.create(
        serial=serial, kind="electricity", organisation=organisation, max_rate=50_000
    )
    Register.objects.create(meter=meter, code="import", unit="Wh", is_main=True)
    return meter


def _client(organisation: Organisation) -> Client:
    _api_key, key = api_key_create(organisation=organisation, name="head-end", actor=SYSTEM)
    return Client(HTTP_AUTHORIZATION=f"Api-Key {key}")


def _body(*rows: tuple[str, str, float]) -> dict[str, Any]:
    return {
        "readings": [
            {"meter": serial, "timestamp": ts, "value": value, "unit": "kWh"}
            for serial, ts, value in rows
        ]
    }


def _process(batch_id: str) -> ImportBatch:
    batch = ImportBatch.objects.get(public_id=batch_id)
    pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=timezone.now())
    batch.refresh_from_db()
    return batch


def test_a_head_end_sends_readings_for_its_own_meters_only(world: World) -> None:
    _meter("SUB1-E1", world.sub1)
    _meter("SUB2-E1", world.sub2)
    _meter("UTILITY-E1", None)
    client = _client(world.sub1)
    body = _body(
        ("SUB1-E1", "2026-10-01T00:15:00Z", 100.0),
        ("SUB1-E1", "2026-10-01T00:30:00Z", 100.25),
        ("SUB2-E1", "2026-10-01T00:30:00Z", 5.0),
        ("UTILITY-E1", "2026-10-01T00:30:00Z", 5.0),
    )
    response = client.post(URL, json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    data = response.json()
    assert data["status"] == "queued" and response["Location"] == data["url"]
    batch = _process(data["id"])
    assert (batch.status, batch.inserted, batch.rejected) == ("done_with_rejections", 2, 2)
    assert batch.organisation == world.sub1 and batch.source == "api"
    assert [r["value"] for r in readings("SUB1-E1")] == [100_000, 100_250]
    assert readings("SUB2-E1") == [] and readings("UTILITY-E1") == []

    detail = client.get(data["url"]).json()
    assert (detail["inserted"], detail["rejected"], detail["row_error_count"]) == (2, 2, 2)
    assert {e["line"] for e in detail["row_errors"]} == {3, 4}
    assert all("unknown meter" in e["message"].lower() for e in detail["row_errors"])
    listed = client.get("/api/v1/readings/batches/").json()
    assert [b["id"] for b in listed["results"]] == [data["id"]]

    entry = AuditLogEntry.objects.get(event_type=AuditEvent.IMPORT_BATCH_CREATED)
    assert entry.actor_id is None and entry.actor_label.startswith("api-key:")
    assert entry.organisation_id == world.sub1.pk


def test_the_same_body_twice_imports_nothing_new(world: World) -> None:
    _meter("SUB1-E1", world.sub1)
    client = _client(world.sub1)
    body = json.dumps(_body(("SUB1-E1", "2026-10-01T00:15:00Z", 1.0)))
    first = client.post(URL, body, content_type="application/json")
    _process(first.json()["id"])
    again = client.post(URL, body, content_type="application/json")
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert again.json()["duplicate_of"] == first.json()["id"]


def test_newline_delimited_json_is_accepted(world: World) -> None:
    _meter("SUB1-E1", world.sub1)
    lines = "\n".join(
        json.dumps({"meter": "SUB1-E1", "timestamp": ts, "value": v, "unit": "Wh"})
        for ts, v in (("2026-10-01T00:15:00Z", 10), ("2026-10-01T00:30:00Z", 20))
    )
    response = _client(world.sub1).post(URL, lines, content_type="application/x-ndjson")
    assert response.status_code == 202
    assert _process(response.json()["id"]).inserted == 2


def test_bad_requests_get_clear_errors_and_create_no_batch(world: World) -> None:
    client = _client(world.sub1)
    response = client.post(
        URL, "", content_type="application/json", CONTENT_TYPE="application/json"
    )
    assert response.status_code == 400 and response.json()["detail"] == "The body is empty."
    response = client.post(URL, "a,b\n", content_type="text/csv")
    assert response.status_code == 415
    with override_settings(PORTAL_IMPORT_MAX_UPLOAD=100):
        big = json.dumps(_body(*[("X", "2026-10-01T00:15:00Z", 1.0)] * 20))
        response = client.post(URL, big, content_type="application/json")
        assert response.status_code == 413
        assert "larger than the upload limit" in response.json()["detail"]
    assert not ImportBatch.objects.exists()
    # Malformed JSON makes a batch that fails with a stored message, nothing imported.
    response = client.post(URL, '{"readings": [', content_type="application/json")
    batch = _process(response.json()["id"])
    assert batch.status == "failed" and "not valid JSON" in batch.error


def test_keys_are_refused_when_missing_wrong_or_revoked(world: World) -> None:
    anonymous = Client()
    response = anonymous.post(URL, "{}", content_type="application/json")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Api-Key"
    wrong = Client(HTTP_AUTHORIZATION="Api-Key smk_000000000000_nope")
    assert wrong.get("/api/v1/readings/batches/").status_code == 401
    api_key, key = api_key_create(organisation=world.sub1, name="k", actor=SYSTEM)
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert client.get("/api/v1/readings/batches/").status_code == 200
    api_key_revoke(api_key=api_key, actor=SYSTEM, as_of=timezone.now())
    response = client.get("/api/v1/readings/batches/")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_a_signed_in_manager_cannot_use_the_machine_endpoints(
    world: World, client_for: Any
) -> None:
    # Only a key authenticates there: a browser session cannot be made to send readings.
    client = client_for(world.group_manager)
    assert client.get("/api/v1/readings/batches/").status_code == 401


def test_a_key_sees_its_subsidiaries_batches_but_not_its_parents(world: World) -> None:
    _meter("SUB1-E1", world.sub1)
    sub1 = _client(world.sub1)
    sent = sub1.post(
        URL,
        json.dumps(_body(("SUB1-E1", "2026-10-01T00:15:00Z", 1.0))),
        content_type="application/json",
    ).json()
    group = _client(world.group)
    assert group.get(sent["url"]).status_code == 200
    group_batch = group.post(
        URL,
        json.dumps(_body(("SUB1-E1", "2026-10-01T00:30:00Z", 2.0))),
        content_type="application/json",
    ).json()
    assert sub1.get(group_batch["url"]).status_code == 404
    assert [b["id"] for b in sub1.get("/api/v1/readings/batches/").json()["results"]] == [
        sent["id"]
    ]
    assert reverse("meters:api_batch_detail", kwargs={"batch_id": sent["id"]}) == sent["url"]
