"""Browser test fixtures: the seeded world, signing in, and where screenshots go."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.world import Harbour, harbour_seed
from tests.factories import PASSWORD


def screenshots_dir() -> Path:
    """SCREENSHOTS_DIR, or a folder in /tmp: looked at by people, not by the suite."""
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or "/tmp/smartmeter-screenshots")  # noqa: S108
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def shots() -> Path:
    return screenshots_dir()


@pytest.fixture
def harbour(transactional_db: None) -> Harbour:
    """The seeded world. Per test: live-server tests are transactional, each ends in a flush."""
    return harbour_seed()


def sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_role("heading", name="My accounts")).to_be_visible()


@pytest.fixture
def signed_in(live_server: Any, page: Page) -> Any:
    """sign_in bound to the live server: signed_in(email) -> the server's base URL."""

    def go(email: str) -> str:
        sign_in(page, live_server.url, email)
        return str(live_server.url)

    return go
