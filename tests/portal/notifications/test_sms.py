"""SMS backends: console, file, memory and the HTTP gateway against a local server."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from billing.services.warnings import shortage_warnings_run
from portal.notifications.models import Notification
from portal.notifications.services import notification_preference_set, notifications_send
from portal.notifications.sms import (
    ConsoleSmsBackend,
    FileSmsBackend,
    HttpSmsBackend,
    MemorySmsBackend,
    Sms,
    SmsError,
    sms_backend,
)
from tests.factories import SYSTEM

MESSAGE = Sms(to="+886912345678", body="餘額不足 / Low credit", reference="42")


class Gateway(BaseHTTPRequestHandler):
    """A gateway whose answer the test sets: status, body and a delay."""

    requests: ClassVar[list[dict[str, Any]]] = []
    status: ClassVar[int] = 200
    answer: ClassVar[bytes] = b'{"id": "msg-1"}'
    delay: ClassVar[float] = 0.0

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        Gateway.requests.append(
            {
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "content_type": self.headers.get("Content-Type"),
                "json": json.loads(self.rfile.read(length)),
            }
        )
        time.sleep(Gateway.delay)
        self.send_response(Gateway.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the client gave up (the timeout test)
            self.wfile.write(Gateway.answer)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def gateway() -> Iterator[str]:
    Gateway.requests = []
    Gateway.status, Gateway.answer, Gateway.delay = 200, b'{"id": "msg-1"}', 0.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/send"
    server.shutdown()
    server.server_close()


def test_the_console_backend_prints_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert ConsoleSmsBackend().send(MESSAGE) == ""
    out = capsys.readouterr().out
    assert "SMS to +886912345678 [42]" in out
    assert "餘額不足 / Low credit" in out


def test_the_file_backend_appends_one_json_line_per_message(tmp_path: Path) -> None:
    path = tmp_path / "sms" / "outbox.jsonl"
    with override_settings(SMS_FILE_PATH=str(path)):
        backend = FileSmsBackend()
        backend.send(MESSAGE)
        backend.send(Sms(to="+85291234567", body="second"))
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [
        {"to": "+886912345678", "body": "餘額不足 / Low credit", "reference": "42"},
        {"to": "+85291234567", "body": "second", "reference": ""},
    ]


def test_the_file_backend_reports_an_unwritable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SmsError, match="cannot write"):
        FileSmsBackend(str(blocker / "outbox.jsonl")).send(MESSAGE)


def test_the_backend_is_chosen_by_settings() -> None:
    with override_settings(SMS_BACKEND="portal.notifications.sms.MemorySmsBackend"):
        assert isinstance(sms_backend(), MemorySmsBackend)
    with override_settings(SMS_BACKEND="portal.notifications.sms.ConsoleSmsBackend"):
        assert isinstance(sms_backend(), ConsoleSmsBackend)
    with (
        override_settings(
            SMS_BACKEND="portal.notifications.sms.HttpSmsBackend", SMS_GATEWAY_URL=None
        ),
        pytest.raises(ImproperlyConfigured),
    ):
        sms_backend()
    with pytest.raises(ImproperlyConfigured):
        HttpSmsBackend(url="ftp://gateway/")


def test_the_gateway_gets_json_with_a_bearer_token(gateway: str) -> None:
    with override_settings(SMS_SENDER_ID="PORTAL"):
        message_id = HttpSmsBackend(url=gateway, token="s3cret", timeout=5).send(MESSAGE)
    assert message_id == "msg-1"
    [request] = Gateway.requests
    assert request["path"] == "/send"
    assert request["authorization"] == "Bearer s3cret"
    assert request["content_type"] == "application/json"
    assert request["json"] == {
        "to": "+886912345678",
        "message": "餘額不足 / Low credit",
        "reference": "42",
        "sender": "PORTAL",
    }


def test_a_gateway_error_raises_with_its_status_and_reason(gateway: str) -> None:
    Gateway.status, Gateway.answer = 500, b'{"error": "number blocked"}'
    with pytest.raises(SmsError, match=r'gateway answered 500: \{"error": "number blocked"\}'):
        HttpSmsBackend(url=gateway, token="t", timeout=5).send(MESSAGE)


def test_a_slow_gateway_times_out(gateway: str) -> None:
    Gateway.delay = 2.0
    started = time.monotonic()
    with pytest.raises(SmsError, match=r"timed out after 0\.3 s"):
        HttpSmsBackend(url=gateway, token="t", timeout=0.3).send(MESSAGE)
    assert time.monotonic() - started < 1.5


def test_an_unreachable_gateway_raises() -> None:
    with pytest.raises(SmsError, match=r"unreachable|connection"):
        HttpSmsBackend(url="http://127.0.0.1:9/send", token="t", timeout=2).send(MESSAGE)


@pytest.mark.django_db
def test_a_gateway_failure_is_recorded_on_the_notification(gateway: str) -> None:
    from tests.billing.test_warnings import NOW, owner, short_wallet

    Gateway.status, Gateway.answer = 502, b"upstream down"
    wallet = short_wallet()
    user = owner(wallet.account)
    notification_preference_set(
        user=user, topic="shortage", email=False, sms=True, phone="+886912345678", actor=SYSTEM
    )
    shortage_warnings_run(as_of=NOW, actor=SYSTEM)
    with override_settings(
        SMS_BACKEND="portal.notifications.sms.HttpSmsBackend",
        SMS_GATEWAY_URL=gateway,
        SMS_GATEWAY_TOKEN="tok",
        SMS_GATEWAY_TIMEOUT=5,
    ):
        result = notifications_send(as_of=NOW + dt.timedelta(minutes=1))
    assert (result.sent, result.failed) == (0, 1)
    notification = Notification.objects.get()
    assert (notification.status, notification.error) == (
        "failed",
        "gateway answered 502: upstream down",
    )
    assert Gateway.requests[0]["json"]["reference"] == str(notification.pk)
    assert Gateway.requests[0]["authorization"] == "Bearer tok"
