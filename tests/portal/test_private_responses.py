"""No authenticated answer may be cached (issue 12, finding 5): every page, download and API
answer that a signed-in person or an API client gets says `no-store` and `private`."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from portal.tenancy.views.base import AccountView, OrganisationView
from portal.users.models import User
from tests.conftest import World
from tests.portal.tenancy.urlwalk import pages_of

pytestmark = pytest.mark.django_db


def test_every_signed_in_answer_says_no_store(
    world: World, client_for: Callable[[User], Client]
) -> None:
    client = client_for(world.group_manager)
    urls = pages_of(AccountView, "account_id", world.acc1.public_id)
    urls += pages_of(OrganisationView, "org_id", world.group.public_id)
    urls += [
        f"/a/{world.acc1.public_id}/usage/?format=csv",
        f"/api/v1/accounts/{world.acc1.public_id}/",
        "/api/v1/me/",
        "/",
    ]
    answered, cached = 0, []
    for url in urls:
        response = client.get(url)
        if response.status_code >= 400:
            continue
        answered += 1
        header = response.get("Cache-Control", "")
        if "no-store" not in header or "private" not in header:
            cached.append(f"{url} ({response.status_code}): Cache-Control {header!r}")
    assert answered >= 20, urls
    assert cached == []


def test_an_anonymous_page_is_left_to_its_own_headers(client: Client) -> None:
    response = client.get("/healthz")
    assert "no-store" not in response.get("Cache-Control", "")
