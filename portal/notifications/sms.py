"""Text messages: the `SmsBackend` interface and its backends, chosen by `settings.SMS_BACKEND`.

- `ConsoleSmsBackend` writes each message to standard output (development).
- `FileSmsBackend` appends one JSON line per message to `settings.SMS_FILE_PATH` (demos, tests).
- `MemorySmsBackend` keeps messages in a class-level list (tests), like Django's locmem mail.
- `HttpSmsBackend` POSTs JSON to a gateway (`SMS_GATEWAY_URL`) with a bearer token
  (`SMS_GATEWAY_TOKEN`) and a timeout (`SMS_GATEWAY_TIMEOUT` seconds). Most commercial gateways
  (and the small adapters utilities put in front of them) take this shape; the body is
  `{"to": "+886...", "message": "...", "sender": "...", "reference": "..."}`.

A backend raises `SmsError` with a short, loggable reason when the message was not accepted;
the caller records that reason on the notification. The standard library's urllib is enough
for one POST, so no HTTP client is added to the dependencies.
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string


class SmsError(Exception):
    """The message was not accepted; the text says why (kept on the notification)."""


@dataclass(frozen=True)
class Sms:
    to: str
    body: str
    reference: str = ""


class SmsBackend(Protocol):
    def send(self, message: Sms) -> str:
        """Send one message; return the backend's id for it (empty if it has none).

        :raises SmsError: when the message was not accepted.
        """
        ...


class ConsoleSmsBackend:
    """Write messages to standard output, for development."""

    def send(self, message: Sms) -> str:
        sys.stdout.write(f"SMS to {message.to} [{message.reference}]\n{message.body}\n\n")
        sys.stdout.flush()
        return ""


class FileSmsBackend:
    """Append each message as one JSON line to `settings.SMS_FILE_PATH`."""

    _lock = threading.Lock()

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path or settings.SMS_FILE_PATH)

    def send(self, message: Sms) -> str:
        line = json.dumps(
            {"to": message.to, "body": message.body, "reference": message.reference},
            ensure_ascii=False,
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One write of one line in append mode: lines of concurrent workers never interleave.
            with self._lock, self.path.open("a", encoding="utf-8") as file:
                file.write(line + "\n")
        except OSError as error:
            raise SmsError(f"cannot write {self.path}: {error.strerror}") from error
        return ""


class MemorySmsBackend:
    """Keep messages in `MemorySmsBackend.outbox`, for tests."""

    outbox: ClassVar[list[Sms]] = []

    def send(self, message: Sms) -> str:
        self.outbox.append(message)
        return str(len(self.outbox))


class HttpSmsBackend:
    """POST each message as JSON to the gateway, authenticated by a bearer token.

    A 2xx answer means accepted; its JSON `id` (if any) is returned. Any other status, a
    network error or the timeout raises `SmsError`; nothing is retried here, because a gateway
    that timed out may still have sent the message, and a text sent twice is worse than a
    failure the staff can see in the notification list.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float | None = None,  # not money
    ) -> None:
        url = url or settings.SMS_GATEWAY_URL
        if not url:
            raise ImproperlyConfigured("HttpSmsBackend needs SMS_GATEWAY_URL")
        if not url.startswith(("https://", "http://")):
            raise ImproperlyConfigured("SMS_GATEWAY_URL must be an http(s) URL")
        self.url = url
        self.token = token if token is not None else settings.SMS_GATEWAY_TOKEN
        self.timeout = timeout if timeout is not None else settings.SMS_GATEWAY_TIMEOUT

    def send(self, message: Sms) -> str:
        payload = {"to": message.to, "message": message.body, "reference": message.reference}
        if settings.SMS_SENDER_ID:
            payload["sender"] = settings.SMS_SENDER_ID
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url,
            data=json.dumps(payload, ensure_ascii=False).encode(),
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body = response.read(10_000)
        except urllib.error.HTTPError as error:
            detail = error.read(200).decode("utf-8", "replace").strip()
            raise SmsError(f"gateway answered {error.code}: {detail}"[:300]) from error
        except TimeoutError as error:
            raise SmsError(f"gateway timed out after {self.timeout} s") from error
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise SmsError(f"gateway timed out after {self.timeout} s") from error
            raise SmsError(f"gateway unreachable: {error.reason}"[:300]) from error
        except OSError as error:  # connection reset and the like
            raise SmsError(f"gateway connection failed: {error}"[:300]) from error
        try:
            answer = json.loads(body or b"{}")
        except ValueError:
            return ""
        return str(answer.get("id", "")) if isinstance(answer, dict) else ""


def sms_backend() -> SmsBackend:
    """Return an instance of the configured backend (`settings.SMS_BACKEND`)."""
    backend: SmsBackend = import_string(settings.SMS_BACKEND)()
    return backend
