"""Breadcrumbs link only to what the reader may open: every link in the breadcrumb of every
account and organisation page answers 200 to the person reading it. A viewer of a subsidiary
sees the group above it by name, not as a link (its page would answer 404 to them)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from portal.tenancy.roles import Role
from portal.tenancy.views.base import AccountView, OrganisationView
from portal.users.models import User
from tests.conftest import World
from tests.factories import make_membership, make_user
from tests.portal.tenancy.urlwalk import pages_of

pytestmark = pytest.mark.django_db

_CRUMBS = re.compile(r'<ol class="breadcrumb">(.*?)</ol>', re.S)
_LINK = re.compile(r'<a href="([^"]+)"')


def _broken_crumbs(client: Client, urls: list[str]) -> tuple[int, list[str]]:
    """Open each page; return how many showed a breadcrumb, and the crumb links that failed."""
    shown, broken = 0, []
    for url in urls:
        response = client.get(url)
        if response.status_code != 200 or "text/html" not in response["Content-Type"]:
            continue  # a download, a POST-only or htmx-only URL, or a scope the role lacks
        found = _CRUMBS.search(response.content.decode())
        if found is None:
            continue
        shown += 1
        for href in _LINK.findall(found.group(1)):
            status = client.get(href).status_code
            if status != 200:
                broken.append(f"{url}: breadcrumb {href} answers {status}")
    return shown, broken


@pytest.fixture
def sub1_viewer(world: World) -> User:
    viewer = make_user("sub1.viewer@example.com")
    make_membership(viewer, Role.VIEWER, organisation=world.sub1)
    return viewer


def test_a_subsidiary_viewer_gets_no_link_to_the_group(
    world: World, sub1_viewer: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(sub1_viewer)
    urls = pages_of(AccountView, "account_id", world.acc1.public_id)
    urls += pages_of(OrganisationView, "org_id", world.sub1.public_id)
    shown, broken = _broken_crumbs(client, urls)
    assert shown >= 8, urls
    assert broken == []
    html = client.get(reverse("tenancy:account_home", args=[world.acc1.public_id])).content
    crumbs = _CRUMBS.search(html.decode())
    assert crumbs is not None
    # The group is named, as plain text; the subsidiary the viewer belongs to is a link.
    assert '<li class="breadcrumb-item">Group</li>' in crumbs.group(1)
    sub1 = reverse("tenancy:organisation_home", args=[world.sub1.public_id])
    assert f'<a href="{sub1}">Sub 1</a>' in crumbs.group(1)


def test_a_group_manager_gets_every_crumb_as_a_link(
    world: World, client_for: Callable[[User], Client]
) -> None:
    client = client_for(world.group_manager)
    urls = pages_of(AccountView, "account_id", world.acc1.public_id)
    urls += pages_of(OrganisationView, "org_id", world.sub1.public_id)
    urls += pages_of(OrganisationView, "org_id", world.group.public_id)
    shown, broken = _broken_crumbs(client, urls)
    assert shown >= 10, urls
    assert broken == []
    html = client.get(reverse("tenancy:account_home", args=[world.acc1.public_id])).content
    group = reverse("tenancy:organisation_home", args=[world.group.public_id])
    assert f'<a href="{group}">Group</a>' in html.decode()
