"""pytest: real PostgreSQL and Redis on this machine, fast hashing, mail kept in memory."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-" + "t" * 50)
os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ.setdefault("DJANGO_SECURE_COOKIES", "0")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("DJANGO_SECURE_HSTS_SECONDS", "0")
os.environ.setdefault("PORTAL_HTTP_PROTOCOL", "http")
os.environ.setdefault("PORTAL_BASE_URL", "http://127.0.0.1:8000")
os.environ.setdefault("PAYMENT_SANDBOX_SECRET", "sandbox-development-only-tttttttttttttttttttttttt")
os.environ.setdefault("PAYMENT_SANDBOX_ENABLED", "1")
# A slot (below) has databases of its own too, so two runs side by side never share a test
# database (test_smartmeter_gw0 and so on).
os.environ.setdefault(
    "DATABASE_URL",
    "postgres://postgres@127.0.0.1:5432/smartmeter"
    + (
        f"_slot{os.environ['PORTAL_TEST_SLOT']}"
        if os.environ.get("PORTAL_TEST_SLOT", "0") != "0"
        else ""
    ),
)
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
os.environ.setdefault("MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN", "1")
# A made-up bank account, so that the demo's bills show how to pay by transfer.
os.environ.setdefault("BILLING_BANK_NAME", "Demo Bank")
os.environ.setdefault("BILLING_BANK_CODE", "999")
os.environ.setdefault("BILLING_BANK_ACCOUNT", "0099-8877-6655-4433")
# Import payloads of the tests: content-addressed, so parallel workers can share the folder.
os.environ.setdefault("PORTAL_MEDIA_ROOT", "/tmp/smartmeter-test-media")  # noqa: S108

from portal.settings.base import *

# Each xdist worker gets its own Redis databases for cache, rate limits and broker, so that
# clearing them between tests cannot reach into another worker's tests. PORTAL_TEST_SLOT (1-10)
# moves a whole run to other databases, PostgreSQL's (above) and Redis's, for test runs side by
# side on one machine; those slots need a Redis started with `--databases 64`. Slot 0, the
# default, fits Redis's default 16 databases.
_worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or "0")
_slot = int(os.environ.get("PORTAL_TEST_SLOT", "0"))
_cache_db, _broker_db = (2, 10) if _slot == 0 else (16 + 4 * _slot, 18 + 4 * _slot)
CACHES["default"]["LOCATION"] = f"redis://127.0.0.1:6379/{_cache_db + _worker}"
# A test that stops and starts a broker (tests/meters/test_redis_outage.py) starts a Redis of
# its own and points its worker process at it with PORTAL_TEST_BROKER_URL.
CELERY_BROKER_URL = (
    os.environ.get("PORTAL_TEST_BROKER_URL") or f"redis://127.0.0.1:6379/{_broker_db + _worker}"
)

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
# Static files come straight from the finders here; nothing is collected.
STATIC_ROOT = None  # type: ignore[assignment]
WHITENOISE_USE_FINDERS = True
DATABASES["default"]["CONN_MAX_AGE"] = 0
# Lets Django's flush between transactional tests TRUNCATE the append-only audit tables
# (see audit migration 0002); UPDATE and DELETE stay refused.
DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c portal.audit_truncate_allowed=on"
