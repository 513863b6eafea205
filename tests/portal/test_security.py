"""Security headers on every response, no inline scripts, and a clean deploy check."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from portal.users.models import User
from tests.conftest import World

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def _pages(world: World) -> list[str]:
    return [
        reverse("tenancy:home"),
        reverse("tenancy:account_home", args=[world.account_a.public_id]),
        reverse("tenancy:account_members", args=[world.account_a.public_id]),
        reverse("audit:account_log", args=[world.account_a.public_id]),
        reverse("account_email"),
        reverse("mfa_index"),
    ]


def test_every_page_sends_csp_frame_denial_and_a_request_id(
    world: World, client_for: Callable[[User], Client]
) -> None:
    client = client_for(world.alice)
    anonymous = Client()
    for url in [*_pages(world), "/accounts/login/"]:
        response = (anonymous if url.startswith("/accounts/login") else client).get(url)
        assert response.status_code == 200, url
        csp = response["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert re.fullmatch(r"[0-9a-f-]{36}", response["X-Request-ID"])


def test_pages_carry_no_inline_scripts_or_remote_assets(
    world: World, client_for: Callable[[User], Client]
) -> None:
    client = client_for(world.alice)
    anonymous = Client()
    for url in [*_pages(world), "/accounts/login/", "/accounts/signup/"]:
        html = (
            (anonymous if "/log" in url or "/signup" in url else client).get(url).content.decode()
        )
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, (url, tag)
        assert not re.search(r"""(src|href)=["']https?://""", html), url
        assert re.search(r"\son[a-z]+=", html) is None, f"inline event handler on {url}"


def _production_env(**extra: str) -> dict[str, str]:
    """The environment of a production deployment, for `check --deploy`."""
    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "portal.settings.base",
        "DJANGO_SECRET_KEY": "a-production-like-secret-key-" + "k" * 40,
        "DJANGO_ALLOWED_HOSTS": "portal.example.com",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/smartmeter",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "DJANGO_BEHIND_TLS_PROXY": "1",
        "PORTAL_BASE_URL": "https://portal.example.com",
        "PORTAL_AUDIT_KEY": "an-audit-key-kept-in-the-secret-store-" + "a" * 30,
        **extra,
    }


def test_the_deploy_check_is_silent_with_production_settings() -> None:
    env = _production_env()
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_the_deploy_check_warns_about_a_process_local_cache() -> None:
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "portal.settings.base",
        "DJANGO_SECRET_KEY": "a-production-like-secret-key-" + "k" * 40,
        "DJANGO_ALLOWED_HOSTS": "portal.example.com",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/smartmeter",
        "PORTAL_BASE_URL": "https://portal.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "portal.W001" in result.stdout + result.stderr
    assert "portal.W003" in result.stdout + result.stderr  # no audit key of its own


def test_the_deploy_check_fails_with_the_sandbox_payment_provider_on() -> None:
    env = _production_env(PAYMENT_SANDBOX_SECRET="left-over-from-a-staging-deploy-" + "s" * 30)
    base = [sys.executable, "manage.py", "check", "--deploy"]
    # The secret alone: the sandbox stays off outside DEBUG, and the check passes.
    quiet = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    # Switched on explicitly: the deploy check fails.
    env["PAYMENT_SANDBOX_ENABLED"] = "1"
    loud = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert loud.returncode != 0
    assert "portal.E001" in loud.stdout + loud.stderr
