"""An organisation manager uploads readings, watches the batch finish, and makes an API key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from meters.ingest import pipeline
from meters.models import ImportBatch, Meter, Register
from portal.tenancy.models import OrganisationAPIKey
from portal.tenancy.roles import Role
from tests.factories import PASSWORD, SYSTEM, make_membership, make_organisation, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_role("heading", name="My accounts")).to_be_visible()


def test_upload_progress_and_api_key(
    live_server: Any, page: Page, transactional_db: None, tmp_path: Path, shots: Path
) -> None:
    org = make_organisation("Harbour Water")
    manager = make_user("water.manager@example.com")
    make_membership(manager, Role.MANAGER, organisation=org)
    meter = Meter.objects.create(serial="HW-1", kind="water", organisation=org, max_rate=5_000)
    Register.objects.create(meter=meter, code="import", unit="L", is_main=True)
    upload = tmp_path / "october.csv"
    upload.write_text(
        "meter_serial,timestamp,value,unit\n"
        "HW-1,2026-10-01T00:15:00+08:00,10.000,m3\n"
        "HW-1,2026-10-01T00:30:00+08:00,10.012,m3\n"
        "NOT-OURS,2026-10-01T00:30:00+08:00,1.000,m3\n"
    )

    _sign_in(page, live_server.url, "water.manager@example.com")
    page.goto(f"{live_server.url}/o/{org.public_id}/")
    page.get_by_role("link", name="Imports").click()
    page.get_by_label("File").set_input_files(str(upload))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("heading", name="october.csv")).to_be_visible()
    expect(page.get_by_text("queued")).to_be_visible()
    page.screenshot(path=str(shots / "import-queued-en.png"), full_page=True)

    # A worker finishes the batch; the page notices on its own (htmx polls the status).
    batch = ImportBatch.objects.get()
    pipeline.run(batch_id=batch.pk, actor=SYSTEM, as_of=timezone.now())
    expect(page.get_by_text("done, some rows rejected", exact=True)).to_be_visible(timeout=10_000)
    expect(page.get_by_text('unknown meter "NOT-OURS"')).to_be_visible()
    page.screenshot(path=str(shots / "import-done-en.png"), full_page=True)

    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("North head-end")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_label("New API key").input_value()
    assert key.startswith("smk_")
    assert OrganisationAPIKey.objects.get().prefix in key
    page.screenshot(path=str(shots / "api-keys-en.png"), full_page=True)
    page.reload()
    expect(page.get_by_label("New API key")).to_have_count(0)
