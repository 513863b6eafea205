"""The web benchmark (scripts/bench_web.py): production settings on loopback HTTP, plus two
baseline views of its own.

Only the transport settings a plain-HTTP loopback server cannot have are relaxed (TLS
redirect, secure cookies, HSTS); everything else is base.py as production runs it: DEBUG off,
persistent database connections, the Redis cache and cached sessions, static files collected
and served by whitenoise. The baseline views exist only in `portal.bench_urls`, which no other
settings module names.
"""

from __future__ import annotations

import os
from pathlib import Path

from portal.lib.env import env_str

os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
os.environ.setdefault("DJANGO_SECURE_COOKIES", "0")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("DJANGO_SECURE_HSTS_SECONDS", "0")
os.environ.setdefault("PORTAL_HTTP_PROTOCOL", "http")
os.environ.setdefault("PORTAL_BASE_URL", "http://127.0.0.1")
os.environ.setdefault("LOG_LEVEL", "WARNING")

from portal.settings.base import *

ROOT_URLCONF = "portal.bench_urls"
# collectstatic writes here; the benchmark points it at its own scratch folder.
STATIC_ROOT = Path(env_str("PORTAL_STATIC_ROOT", str(BASE_DIR / ".local" / "bench-static")))
