"""The staff admin in Traditional Chinese: every change list, change form and add form of every
registered model, opened by a superuser, shows no English label (data, codes and units aside)."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory

from tests.portal.admin_pages import admin_pages, data_texts, english_labels
from tests.portal.admin_world import admin_world

pytestmark = pytest.mark.django_db


def test_every_admin_page_in_chinese_has_no_english_label() -> None:
    world = admin_world()
    client = world.client("zh-hant")
    objects = world.first_of_each()
    # Every model the admin lists has a record here, so every change form is opened too.
    assert set(admin.site._registry) - set(objects) == set()
    data = data_texts(
        [obj for model in admin.site._registry for obj in model._default_manager.all()[:50]]
    )
    request = RequestFactory().get("/admin/")
    request.user = world.root
    problems: list[str] = []
    opened = 0
    for page in admin_pages(objects):
        model_admin = admin.site._registry[page.model]
        if page.kind == "add" and not model_admin.has_add_permission(request):
            continue  # read-only: no add form
        response = client.get(page.url)
        assert response.status_code == 200, page.url
        html = response.content.decode()
        assert '<html lang="zh-hant"' in html, page.url
        opened += 1
        problems += [f"{page.url}: {text}" for text in english_labels(html, page.model, data)]
    assert opened >= 2 * len(admin.site._registry)
    assert problems == [], "\n".join(problems)
