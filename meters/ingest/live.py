"""Live ChirpStack v4 events (MQTT): one message in, what to keep of it out.

Pure functions, no database: the MQTT subscriber (`manage.py mqtt_ingest`) decides per message
whether to store it (`Keep`), drop it as not ours (`Ignore`) or refuse it (`Reject`); the stored
messages are batched into imports later by `meters.services.inbound.inbound_flush`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from meters.ingest.formats.chirpstack import MAX_LINE_BYTES

# Only these carry readings, alarms and battery levels; join, ack, txack, log, location and
# integration events are of no use to the portal.
STORED_EVENTS = frozenset({"up", "status"})
# inbound_flush wraps each payload in a line of its own ({"event", "payload", "received_at"})
# and the ChirpStack parser fails the whole batch on a line longer than MAX_LINE_BYTES, so one
# oversized message must be refused here, with room left for the wrapper and for numbers that
# PostgreSQL's jsonb writes out longer than they came in.
MAX_BODY_BYTES = MAX_LINE_BYTES // 4
# ChirpStack's deduplicationId is a UUID; anything much longer is not one, and the stored key
# (with the event in front) must fit InboundMessage.dedup_key (200 characters) untruncated.
MAX_DEDUP_ID = 100


@dataclass(frozen=True, slots=True)
class Keep:
    event: str
    key: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ignore:
    event: str


@dataclass(frozen=True, slots=True)
class Reject:
    reason: str


def event_of_topic(topic: str) -> str:
    """The event type: ChirpStack's topic ends in .../event/{event}."""
    return topic.rsplit("/", 1)[-1]


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _refuse_constant(name: str) -> float:
    # PostgreSQL's jsonb has no NaN or Infinity: storing one would fail the whole flush.
    raise ValueError(f"{name} is not valid JSON")


def _text_problem(value: Any, depth: int = 0) -> str | None:
    """Why PostgreSQL's jsonb would refuse `value` (it fails the whole insert), or None."""
    if depth > 64:
        return "nested too deeply"
    if isinstance(value, str):
        return (
            "a string contains NUL or an unpaired surrogate" if _UNSTORABLE.search(value) else None
        )
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _text_problem(key, depth + 1) or _text_problem(item, depth + 1)
            if problem:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = _text_problem(item, depth + 1)
            if problem:
                return problem
    elif isinstance(value, float) and not math.isfinite(value):
        return "a number is out of range"
    return None


def _decode(body: bytes) -> dict[str, Any] | Reject:
    if len(body) > MAX_BODY_BYTES:
        return Reject(f"{len(body)} bytes, more than the {MAX_BODY_BYTES} accepted")
    try:
        payload = json.loads(body, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        return Reject("not UTF-8 (is the ChirpStack MQTT integration set to json=true?)")
    except (ValueError, RecursionError) as error:
        return Reject(f"not JSON ({str(error)[:120]})")
    if not isinstance(payload, dict):
        return Reject("not a JSON object")
    problem = _text_problem(payload)
    return Reject(problem) if problem else payload


def chirpstack_message(topic: str, body: bytes) -> Keep | Ignore | Reject:
    """Classify one MQTT message of ChirpStack's JSON integration."""
    event = event_of_topic(topic)
    if event not in STORED_EVENTS:
        return Ignore(event)
    payload = _decode(body)
    if isinstance(payload, Reject):
        return payload
    deduplication_id = payload.get("deduplicationId")
    if not isinstance(deduplication_id, str) or not deduplication_id.strip():
        return Reject("no deduplicationId")
    if len(deduplication_id) > MAX_DEDUP_ID:
        return Reject(f"deduplicationId longer than {MAX_DEDUP_ID} characters")
    # inbound_store puts the event in front of the key: ChirpStack gives a status event the
    # deduplicationId of the uplink that carried it.
    return Keep(event, deduplication_id, payload)
