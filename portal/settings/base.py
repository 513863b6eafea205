"""Settings shared by every environment; production is this file plus the environment.

Defaults here are the production-safe ones (secure cookies, HSTS, SSL redirect, MFA for staff);
`local.py` and `test.py` relax what a developer machine needs. Nothing exists only in production.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
import django_stubs_ext
from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.utils.translation import gettext_lazy as _

from portal.lib.env import env_bool, env_int, env_list, env_optional, env_str

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", [])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "portal.admin_config.PortalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    # allauth's session list and WebAuthn key list load its template tags (naturaltime).
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "csp",
    "pgtrigger",
    "portal.users",
    "portal.tenancy",
    "portal.audit",
    "portal.notifications",
    "web",
    "meters",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.middleware.RequestContextMiddleware",
    "portal.middleware.PrivateResponsesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "portal.users.middleware.SessionTimeoutMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "allauth.usersessions.middleware.UserSessionsMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.portal",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
# Persistent connections: a new connection per request costs far more than the query
# (docs/DESIGN.md §8). With
# DATABASE_POOL=1 Django's psycopg pool is used instead, which requires CONN_MAX_AGE = 0.
DATABASE_POOL = env_bool("DATABASE_POOL", False)
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL"),
        conn_max_age=0 if DATABASE_POOL else env_int("DATABASE_CONN_MAX_AGE", 300),
        conn_health_checks=not DATABASE_POOL,
    )
}
if DATABASE_POOL:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN", 2),
        "max_size": env_int("DATABASE_POOL_MAX", 8),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and sessions -------------------------------------------------------------------
# Rate limits (allauth) and cached sessions live in the cache, so production needs a shared
# one; the deploy check portal.W001 warns when it is process-local.
REDIS_URL = env_optional("REDIS_URL")
CACHE_REDIS_URL = env_optional("CACHE_REDIS_URL") or REDIS_URL
if CACHE_REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "smp"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
# The cookie lives at most as long as the absolute limit; SessionTimeoutMiddleware enforces the
# idle limit itself so that not every request has to rewrite the session row.
SESSION_IDLE_TIMEOUT = timedelta(minutes=env_int("SESSION_IDLE_TIMEOUT_MINUTES", 30))
SESSION_ABSOLUTE_TIMEOUT = timedelta(hours=env_int("SESSION_ABSOLUTE_TIMEOUT_HOURS", 12))
SESSION_ACTIVITY_RESOLUTION = timedelta(seconds=60)
SESSION_COOKIE_AGE = int(SESSION_ABSOLUTE_TIMEOUT.total_seconds())
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
LANGUAGE_COOKIE_SECURE = SESSION_COOKIE_SECURE
LANGUAGE_COOKIE_SAMESITE = "Lax"

# --- Transport security -------------------------------------------------------------------
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
# Load balancers probe the health check over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("DJANGO_BEHIND_TLS_PROXY", False):
    # Only behind a proxy that strips and sets this header itself; the deploy check cannot tell.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = env_bool("DJANGO_USE_X_FORWARDED_HOST", False)
# The audit log records the client address; behind a proxy name how many hops to trust. allauth
# keys its rate limits on the same address: without this it would see only the proxy's, and ten
# wrong passwords from anyone would lock everyone out.
TRUSTED_PROXY_COUNT = env_int("PORTAL_TRUSTED_PROXY_COUNT", 0)
ALLAUTH_TRUSTED_PROXY_COUNT = TRUSTED_PROXY_COUNT

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}

# --- Authentication -----------------------------------------------------------------------
AUTH_USER_MODEL = "users.User"
AUTHENTICATION_BACKENDS = ["allauth.account.auth_backends.AuthenticationBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {
        "NAME": "portal.users.validators.MaximumLengthValidator",
        "OPTIONS": {"max_length": 128},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "tenancy:home"

ACCOUNT_ADAPTER = "portal.users.adapter.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_SESSION_REMEMBER = False
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_DEFAULT_HTTP_PROTOCOL = env_str("PORTAL_HTTP_PROTOCOL", "https")
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Smart Meter Portal] "
ACCOUNT_SIGNUP_FORM_HONEYPOT_FIELD = None
# Failed logins: per client address and per email. The email limit is the lockout: once reached,
# even the right password is refused until the window passes. The admin login goes through the
# same form (portal.adminsite), so these limits cover it too.
ACCOUNT_RATE_LIMITS = {
    "login_failed": env_str("PORTAL_LOGIN_FAILED_LIMIT", "10/m/ip,5/15m/key"),
    "login": env_str("PORTAL_LOGIN_LIMIT", "30/m/ip"),
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "confirm_email": "1/3m/key",
    "change_password": "5/m/user",
    "reauthenticate": "10/m/user",
    "manage_email": "10/m/user",
}

MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_TOTP_ISSUER = "Smart Meter Portal"
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = env_bool("MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN", False)
MFA_RATE_LIMITS = {"authenticate": "5/m/user"}
# Staff reach the admin only with a second factor (docs/QUALITY.md: required for staff).
PORTAL_STAFF_REQUIRE_MFA = env_bool("PORTAL_STAFF_REQUIRE_MFA", True)

USERSESSIONS_TRACK_ACTIVITY = False
# Residents may create a login themselves; it sees nothing until a membership is granted.
PORTAL_SIGNUP_OPEN = env_bool("PORTAL_SIGNUP_OPEN", True)

# --- Email --------------------------------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(BASE_DIR / ".local" / "mail"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Smart Meter Portal <no-reply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Internationalisation -----------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hant", _("Traditional Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True
# Dates, times and numbers per language (portal/formats): numbers alike in every language.
FORMAT_MODULE_PATH = ["portal.formats"]

# --- Static files -------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_VERSIONING_CLASS": None,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Smart Meter Portal API",
    "DESCRIPTION": "Accounts, organisations, consumption and billing for residents, managers "
    "and head-end systems. Every path under /api/v1/accounts/<account_id>/ is scoped to "
    "that account: 404 to non-members, 403 to members whose role lacks the scope.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery -------------------------------------------------------------------------------
CELERY_BROKER_URL = env_optional("CELERY_BROKER_URL") or REDIS_URL or "redis://127.0.0.1:6379/0"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TIMEZONE = "UTC"
# Redis redelivers a task whose worker died only after the visibility timeout (1 h by default);
# every task is idempotent and finishes well inside these 5 minutes (docs/DESIGN.md §8).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 300,
    "unacked_restore_interval": 5,
    "unacked_restore_throttle": 1,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task running when the broker connection drops finishes, and its late ack is sent once the
# worker has reconnected (tests/meters/test_redis_outage.py); cancelling it instead (Celery 6's
# default) would cost an import an attempt for every Redis restart.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Queues by workload, declared here in one place (Celery 5.7 deprecates the task attribute):
# readings (bulk imports), billing, notifications (email/SMS) and default.
CELERY_TASK_ROUTES = {
    "portal.tenancy.tasks.invitation_send_task": {"queue": "notifications"},
    "meters.tasks.import_batch_task": {"queue": "readings"},
    "meters.tasks.rollups_rebuild_task": {"queue": "readings"},
    "billing.tasks.charging.prepaid_charge_task": {"queue": "billing"},
    "billing.tasks.charging.disconnect_sweep_task": {"queue": "billing"},
    "meters.tasks.meter_events_notify_task": {"queue": "notifications"},
    "portal.notifications.tasks.notifications_send_task": {"queue": "notifications"},
    "billing.tasks.*": {"queue": "billing"},
}
CELERY_BEAT_SCHEDULE = {
    "audit-verify-nightly": {
        "task": "portal.audit.tasks.audit_chain_verify_task",
        "schedule": crontab(hour=3, minute=15),
    },
    # Anchors every audit chain's head, so that a tail cut off one chain is caught (a row
    # only when a head moved; one index probe per chain).
    "audit-anchor": {
        "task": "portal.audit.tasks.audit_anchor_task",
        "schedule": crontab(minute="*/15"),
    },
    "invitations-expire-hourly": {
        "task": "portal.tenancy.tasks.invitations_expire_task",
        "schedule": crontab(minute=5),
    },
    "import-sweeper": {"task": "meters.tasks.import_sweeper_task", "schedule": 30.0},
    "import-inbox": {"task": "meters.tasks.import_inbox_task", "schedule": 60.0},
    "inbound-flush": {"task": "meters.tasks.inbound_flush_task", "schedule": 10.0},
    "derived-events-hourly": {
        "task": "meters.tasks.derived_events_task",
        "schedule": crontab(minute=20),
    },
    "partition-maintenance-daily": {
        "task": "meters.tasks.partition_maintenance_task",
        "schedule": crontab(hour=2, minute=40),
    },
    "inbound-purge-daily": {
        "task": "meters.tasks.inbound_purge_task",
        "schedule": crontab(hour=2, minute=50),
    },
    # The 2nd at 03:00 UTC: every time zone has finished the month, with a day for late reads.
    "bill-run-monthly": {
        "task": "billing.tasks.bills.bill_run_monthly_task",
        "schedule": crontab(day_of_month=2, hour=3, minute=0),
    },
    "shortage-warnings-hourly": {
        # After the hourly prepaid charge (minute 35), so days left count today's charges.
        "task": "billing.tasks.warnings.shortage_warnings_task",
        "schedule": crontab(minute=45),
    },
    # Deletes expired data exports and re-queues exports stalled for 15 minutes.
    "exports-sweep": {
        "task": "billing.tasks.exports.exports_sweep_task",
        "schedule": crontab(minute="*/10"),
    },
    "bill-notices-hourly": {
        "task": "billing.tasks.warnings.bill_notices_task",
        "schedule": crontab(minute=50),
    },
    "notifications-send": {
        "task": "portal.notifications.tasks.notifications_send_task",
        "schedule": 60.0,
    },
    "prepaid-charge-hourly": {
        "task": "billing.tasks.charging.prepaid_charge_task",
        "schedule": crontab(minute=35),
    },
    # Resumes a charge run whose worker died, within a minute rather than the broker's
    # visibility timeout (billing.services.charging).
    "prepaid-charge-sweeper": {
        "task": "billing.tasks.charging.prepaid_charge_sweeper_task",
        "schedule": 30.0,
    },
    "disconnect-sweep": {
        "task": "billing.tasks.charging.disconnect_sweep_task",
        "schedule": crontab(minute="*/15"),
    },
    "topups-reconcile": {
        "task": "billing.tasks.payments.topups_reconcile_task",
        "schedule": crontab(minute="*/5"),
    },
    "ledger-verify-nightly": {
        "task": "billing.tasks.payments.ledger_verify_task",
        "schedule": crontab(hour=3, minute=30),
    },
}

# --- Meter readings -----------------------------------------------------------------------
MEDIA_ROOT = Path(env_str("PORTAL_MEDIA_ROOT", str(BASE_DIR / ".local" / "media")))
# Import payloads are kept (content-addressed) so a batch can be parsed again.
PORTAL_IMPORT_STORAGE = env_str("PORTAL_IMPORT_STORAGE", str(MEDIA_ROOT / "imports"))
# Files dropped here become import batches (format from the suffix: .csv .txt .xml .ndjson .json).
PORTAL_IMPORT_INBOX = env_str("PORTAL_IMPORT_INBOX", str(BASE_DIR / ".local" / "inbox"))
# Largest file accepted through the portal and the API (the command line has no limit).
PORTAL_IMPORT_MAX_UPLOAD = env_int("PORTAL_IMPORT_MAX_UPLOAD_MB", 50) * 1024 * 1024
# Rows merged per transaction (registers are grouped up to about this many rows).
PORTAL_IMPORT_CHUNK_ROWS = env_int("PORTAL_IMPORT_CHUNK_ROWS", 200_000)
# A batch that meets an unexpected error is tried again, this many attempts in all, then ends
# failed; a worker killed mid-batch uses up an attempt too.
PORTAL_IMPORT_MAX_ATTEMPTS = env_int("PORTAL_IMPORT_MAX_ATTEMPTS", 3)
# Seconds to wait before the 2nd, 3rd, ... attempt (the last value repeats); the sweeper, every
# 30 s, starts the batch once its wait is over.
PORTAL_IMPORT_RETRY_BACKOFF = tuple(
    int(seconds) for seconds in env_list("PORTAL_IMPORT_RETRY_BACKOFF", ["30", "120", "600"])
)
# ChirpStack's HTTP integration sends this in the Authorization header: "Bearer <token>".
CHIRPSTACK_INTEGRATION_TOKEN = env_optional("CHIRPSTACK_INTEGRATION_TOKEN")
# Events accepted per minute from the ChirpStack integration (one budget for all its devices;
# ChirpStack retries after a 429).
CHIRPSTACK_RATE_PER_MINUTE = env_int("CHIRPSTACK_RATE_PER_MINUTE", 6_000)
# Calls per minute that one API key may make to each machine endpoint (bulk readings, batch
# list, batch detail); more answer 429 with Retry-After.
MACHINE_API_RATE_PER_MINUTE = env_int("MACHINE_API_RATE_PER_MINUTE", 600)
MQTT_HOST = env_str("MQTT_HOST", "127.0.0.1")
MQTT_PORT = env_int("MQTT_PORT", 1883)
MQTT_TOPIC = env_str("MQTT_TOPIC", "application/+/device/+/event/+")
MQTT_USERNAME = env_optional("MQTT_USERNAME")
MQTT_PASSWORD = env_optional("MQTT_PASSWORD")

# --- Logging ------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_context": {"()": "portal.middleware.RequestContextLogFilter"}},
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["request_context"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # dsmr-parser logs every malformed line of a customer's file at ERROR; the import
        # reports those lines as row errors already.
        "dsmr_parser": {"level": "CRITICAL"},
    },
}

# The key of the audit log's hash chain: keep it outside the database and never change it.
PORTAL_AUDIT_KEY = env_optional("PORTAL_AUDIT_KEY")

# --- Portal -------------------------------------------------------------------------------
# The brand: translated (lazily, in the reader's language) unless a deployment names itself.
PORTAL_SITE_NAME = env_str("PORTAL_SITE_NAME", "") or _("Smart Meter Portal")
# Links in emails sent by workers, which have no request to take the host from.
PORTAL_BASE_URL = env_str("PORTAL_BASE_URL")

# --- Prepaid ------------------------------------------------------------------------------
# Local hours [start, end) of weekdays in which a disconnection may be queued.
PREPAID_DISCONNECT_HOURS = (
    env_int("PREPAID_DISCONNECT_FROM_HOUR", 9),
    env_int("PREPAID_DISCONNECT_UNTIL_HOUR", 16),
)
# Accounts charged per transaction by the daily prepaid charge.
PREPAID_CHARGE_CHUNK = env_int("PREPAID_CHARGE_CHUNK", 5000)
# Yesterday is charged once the account's local clock passes this hour (night imports land).
PREPAID_CHARGE_HOUR = env_int("PREPAID_CHARGE_HOUR", 6)
# Days before yesterday that the charge completes for accounts a stopped run left uncharged.
PREPAID_CHARGE_CATCH_UP_DAYS = env_int("PREPAID_CHARGE_CATCH_UP_DAYS", 7)
# A charge run whose worker died this many times is given up (the next hourly run completes it).
PREPAID_CHARGE_MAX_ATTEMPTS = env_int("PREPAID_CHARGE_MAX_ATTEMPTS", 3)

# --- Payments -----------------------------------------------------------------------------
# The provider residents pay top-ups through (billing.payments.providers).
PAYMENT_PROVIDER = env_str("PAYMENT_PROVIDER", "sandbox")
# The sandbox provider's webhook signing key; without one the sandbox (its checkout page and
# its webhook endpoint) is off. local and test settings give a development key.
PAYMENT_SANDBOX_SECRET = env_optional("PAYMENT_SANDBOX_SECRET")
# Anyone may "pay" through the sandbox, so its secret alone does not turn it on: it also needs
# DEBUG or this explicit switch, and `check --deploy` fails while it is on (portal.E001).
PAYMENT_SANDBOX_ENABLED = env_bool("PAYMENT_SANDBOX_ENABLED", DEBUG)
# How the sandbox checkout sends its webhook: "http" posts it to PORTAL_BASE_URL (falling back
# to handling it in-process when that does not answer), "inline" handles it in-process.
PAYMENT_SANDBOX_DELIVERY = env_str("PAYMENT_SANDBOX_DELIVERY", "inline")
# Webhook deliveries accepted per minute from one address (a provider retries after a 429).
PAYMENT_WEBHOOK_RATE_PER_MINUTE = env_int("PAYMENT_WEBHOOK_RATE_PER_MINUTE", 300)
# Largest single top-up, in major units of the wallet's currency.
PAYMENT_TOPUP_MAX = env_int("PAYMENT_TOPUP_MAX", 100_000)
PORTAL_INVITATION_TTL = timedelta(days=env_int("PORTAL_INVITATION_TTL_DAYS", 14))

# --- Bills -------------------------------------------------------------------------------
# Days between a postpaid bill's issue and its due date.
BILLING_DUE_DAYS = env_int("BILLING_DUE_DAYS", 14)
# The prefix of the utility's own bill numbers, for households without an organisation
# (RES-2026-000123); organisations' prefixes are kept with their number series.
BILLING_HOUSEHOLD_BILL_PREFIX = env_str("BILLING_HOUSEHOLD_BILL_PREFIX", "RES")
# How to pay a bill, printed on it: the utility's bank account for transfers. Without an
# account number the bill only asks for the payment reference to be quoted.
# The site's name by default, in the reader's language like the brand.
BILLING_PAYEE_NAME = env_str("BILLING_PAYEE_NAME", "") or PORTAL_SITE_NAME
BILLING_BANK_NAME = env_str("BILLING_BANK_NAME", "")
BILLING_BANK_CODE = env_str("BILLING_BANK_CODE", "")
BILLING_BANK_ACCOUNT = env_str("BILLING_BANK_ACCOUNT", "")

# --- Shortage warnings and notifications --------------------------------------------------
# Days of credit left that warn, when no organisation or account policy says otherwise; the
# empty balance (0) always warns, policy or not.
SHORTAGE_WARNING_THRESHOLDS = [
    int(days) for days in env_list("SHORTAGE_WARNING_THRESHOLDS", ["7", "3", "1", "0"])
]
# A warning still unresolved this long after it went out is sent one level up the tree.
SHORTAGE_ESCALATION_AFTER = timedelta(hours=env_int("SHORTAGE_ESCALATION_HOURS", 24))
# Local quiet hours [from, until) of members who set none: messages wait until they end.
NOTIFICATION_QUIET_HOURS = (
    env_str("NOTIFICATION_QUIET_FROM", "22:00"),
    env_str("NOTIFICATION_QUIET_UNTIL", "08:00"),
)
# Messages claimed (and row-locked) per transaction by the sender.
NOTIFICATION_SEND_BATCH = env_int("NOTIFICATION_SEND_BATCH", 50)
# Bills issued (or fallen due) longer ago than this get no notice: a first deployment does not
# mail the whole bill history.
BILL_NOTICE_LOOKBACK = timedelta(days=env_int("BILL_NOTICE_LOOKBACK_DAYS", 14))
# portal.notifications.sms.ConsoleSmsBackend, FileSmsBackend (SMS_FILE_PATH) or HttpSmsBackend
# (the gateway).
SMS_BACKEND = env_str("SMS_BACKEND", "portal.notifications.sms.ConsoleSmsBackend")
SMS_FILE_PATH = env_str("SMS_FILE_PATH", str(BASE_DIR / ".local" / "sms.log"))
SMS_GATEWAY_URL = env_optional("SMS_GATEWAY_URL")
SMS_GATEWAY_TOKEN = env_optional("SMS_GATEWAY_TOKEN")
SMS_GATEWAY_TIMEOUT = env_int("SMS_GATEWAY_TIMEOUT_SECONDS", 10)
SMS_SENDER_ID = env_str("SMS_SENDER_ID", "")
