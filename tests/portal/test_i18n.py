"""English and Traditional Chinese ship together: the catalog is complete and current."""

from __future__ import annotations

import re
import shutil
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
CATALOG = Path("locale/zh_Hant/LC_MESSAGES/django.po")


def _entries(po: Path) -> dict[str, tuple[str, bool]]:
    """Return {msgid: (msgstr, fuzzy)} from a .po file (plural forms joined)."""
    entries: dict[str, tuple[str, bool]] = {}
    for block in po.read_text().split("\n\n"):
        fuzzy = "#, fuzzy" in block or ", fuzzy" in block
        fields: dict[str, str] = {}
        current = ""
        for line in block.splitlines():
            match = re.match(r'^(msgid|msgid_plural|msgstr(?:\[\d+\])?) "(.*)"$', line)
            if match:
                current = match.group(1)
                fields[current] = match.group(2)
            elif line.startswith('"') and current:
                fields[current] += line[1:-1]
        if fields.get("msgid"):
            msgstr = fields.get("msgstr") or "".join(
                v for k, v in fields.items() if k.startswith("msgstr[")
            )
            entries[fields["msgid"]] = (msgstr, fuzzy)
    return entries


def test_every_string_is_translated_and_none_is_fuzzy() -> None:
    entries = _entries(ROOT / CATALOG)
    assert len(entries) > 150
    untranslated = [msgid for msgid, (msgstr, _) in entries.items() if not msgstr]
    fuzzy = [msgid for msgid, (_, is_fuzzy) in entries.items() if is_fuzzy]
    assert untranslated == []
    assert fuzzy == []


@pytest.mark.slow
def test_the_catalog_holds_every_string_in_the_sources(tmp_path: Path) -> None:
    # Extract afresh from a copy of the sources and compare: a new translatable string that
    # never reached the catalog fails here.
    for name in ("portal", "meters", "billing", "web", "templates", "locale", "manage.py"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    (tmp_path / "static").mkdir()
    result = subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "zh_Hant", "--no-obsolete"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "portal.settings.test"},
    )
    assert result.returncode == 0, result.stderr
    fresh = _entries(tmp_path / CATALOG)
    missing = sorted(msgid for msgid, (msgstr, _) in fresh.items() if not msgstr)
    assert missing == [], "run `make makemessages` and translate these"


@pytest.mark.django_db
def test_the_language_switch_renders_pages_in_chinese(
    world: World, client_for: Callable[[User], Client]
) -> None:
    client = client_for(world.alice)
    response = client.post(
        reverse("set_language"), {"language": "zh-hant", "next": reverse("tenancy:home")}
    )
    assert response.status_code == 302
    for url in (
        reverse("tenancy:home"),
        reverse("tenancy:account_home", args=[world.account_a.public_id]),
        reverse("tenancy:account_members", args=[world.account_a.public_id]),
        reverse("audit:account_log", args=[world.account_a.public_id]),
    ):
        html = client.get(url).content.decode()
        assert 'lang="zh-hant"' in html
        assert "我的帳戶" in html, url
        for english in ("My accounts", "Sign out", "Members", "Account number"):
            assert f">{english}<" not in html, (url, english)


@pytest.mark.django_db
def test_the_sign_in_page_is_translated_too() -> None:
    html = Client(HTTP_ACCEPT_LANGUAGE="zh-Hant").get("/accounts/login/").content.decode()
    assert "登入" in html
