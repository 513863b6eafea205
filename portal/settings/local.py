"""Developer machine: `make run` and manage.py by hand. Base plus relaxed defaults."""

from __future__ import annotations

import os
from pathlib import Path

from portal.lib.devcluster import cluster_database_url

_BASE_DIR = Path(__file__).resolve().parent.parent.parent

# Defaults only: anything set in the environment wins.
os.environ.setdefault("DJANGO_SECRET_KEY", "local-development-only-" + "x" * 40)
os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
os.environ.setdefault("DJANGO_SECURE_COOKIES", "0")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("DJANGO_SECURE_HSTS_SECONDS", "0")
os.environ.setdefault("PORTAL_HTTP_PROTOCOL", "http")
os.environ.setdefault("PORTAL_BASE_URL", "http://127.0.0.1:8000")
os.environ.setdefault("PAYMENT_SANDBOX_SECRET", "sandbox-development-only-llllllllllllllllllllllll")
os.environ.setdefault("PAYMENT_SANDBOX_DELIVERY", "http")
os.environ.setdefault("DATABASE_URL", cluster_database_url(_BASE_DIR))
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
os.environ.setdefault("MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN", "1")
# The demo staff login works without enrolling an authenticator; production keeps it required.
os.environ.setdefault("PORTAL_STAFF_REQUIRE_MFA", "0")
# A made-up bank account, so that the demo's bills show how to pay by transfer.
os.environ.setdefault("BILLING_BANK_NAME", "Demo Bank")
os.environ.setdefault("BILLING_BANK_CODE", "999")
os.environ.setdefault("BILLING_BANK_ACCOUNT", "0099-8877-6655-4433")

from portal.settings.base import *  # noqa: E402

STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
# Static files come straight from the finders here; nothing is collected.
STATIC_ROOT = None  # type: ignore[assignment]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
