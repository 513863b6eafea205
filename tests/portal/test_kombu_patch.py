"""The kombu patch of portal/celery.py (issue 12, fault 2), against a real Redis.

A consumer holds an unacknowledged message (an acks_late task running) and has a BRPOP in
flight (a free slot) when Redis goes away; then the connection is cleaned up as Celery's
consumer does on losing it (`collect()`, then `close()`). Unpatched, the cleanup raises an
AttributeError, which stops a worker for good; patched, it does not, the message stays in
Redis's unacked set, and its ack goes through once Redis is back.

When kombu changes, these tests say whether the patch is still needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import kombu
import pytest
from kombu.common import ignore_errors
from kombu.transport import redis as kombu_redis

from portal import celery as portal_celery
from tests.private_redis import PrivateRedis

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _lose_redis_under_a_busy_consumer(
    server: PrivateRedis,
) -> tuple[kombu.Connection, list[kombu.Message]]:
    connection = kombu.Connection(server.url)
    queue = kombu.Queue("outage", routing_key="outage")
    with connection.Producer() as producer:
        producer.publish({"task": 1}, routing_key="outage", declare=[queue])
    held: list[kombu.Message] = []
    consumer = connection.Consumer([queue], callbacks=[lambda body, message: held.append(message)])
    consumer.consume()
    # Celery's gossip and remote control listen on channels of their own, to auto-deleted
    # fanout queues; closing those with Redis gone fails too.
    broadcast = kombu.Queue("events", kombu.Exchange("events", type="fanout"), auto_delete=True)
    connection.Consumer([broadcast], channel=connection.channel(), callbacks=[]).consume()
    for _ in range(20):  # one event at a time: the subscription's replies come too
        if held:
            break
        with contextlib.suppress(TimeoutError):
            connection.drain_events(timeout=1)
    assert len(held) == 1  # delivered, not acknowledged: the task runs
    for _ in range(20):
        try:
            connection.drain_events(timeout=0.3)
        except TimeoutError:
            break
    assert connection.default_channel._in_poll  # type: ignore[attr-defined]
    server.stop()
    return connection, held


def _clean_up_as_celery_does(connection: kombu.Connection) -> None:
    """celery.worker.consumer.Consumer.on_connection_error_after_connected (5.7.0)."""
    with contextlib.suppress(Exception):  # as Celery does
        connection.collect(socket_timeout=1.0)
    ignore_errors(connection, connection.close)


def test_the_patch_is_applied_to_the_kombu_it_was_verified_on() -> None:
    assert version("kombu") in portal_celery.KOMBU_PATCHED_VERSIONS, (
        f"kombu {version('kombu')} is installed: run this file and "
        "tests/meters/test_redis_outage.py without the patch in portal/celery.py; keep the "
        "patch (adding this version) only if they fail without it"
    )
    assert kombu_redis.Channel.close is portal_celery._close_after_a_lost_brpop


def test_unpatched_kombu_still_fails_when_redis_goes_away_under_a_busy_consumer(
    server: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kombu_redis.Channel, "close", portal_celery.kombu_channel_close)
    connection, _ = _lose_redis_under_a_busy_consumer(server)
    # If this stops raising, kombu fixed it: the patch in portal/celery.py can go.
    with pytest.raises(AttributeError, match="hostname"):
        _clean_up_as_celery_does(connection)


def test_patched_kombu_keeps_the_message_and_acks_it_once_redis_is_back(
    server: PrivateRedis,
) -> None:
    connection, held = _lose_redis_under_a_busy_consumer(server)
    _clean_up_as_celery_does(connection)
    server.start()
    client = server.client()
    try:
        assert client.hlen("unacked") == 1  # neither lost nor delivered twice
        held[0].ack()
        assert client.hlen("unacked") == 0
        assert client.llen("outage") == 0
    finally:
        client.close()
