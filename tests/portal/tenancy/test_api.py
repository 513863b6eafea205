"""The tenancy API: same scoping rules as the pages, JSON answers, an OpenAPI schema."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from portal.users.models import User
from tests.conftest import World
from tests.factories import make_account

pytestmark = pytest.mark.django_db
ClientFor = Callable[[User], Client]


def test_me_lists_the_persons_tenants(world: World, client_for: ClientFor) -> None:
    data = client_for(world.group_manager).get(reverse("tenancy:api_me")).json()
    assert data["email"] == "gm@example.com"
    assert data["organisations"][0]["name"] == "Group"
    assert data["organisations"][0]["role"] == "manager"


def test_account_detail_with_role_and_scopes(world: World, client_for: ClientFor) -> None:
    url = reverse("tenancy:api_account_detail", args=[world.account_a.public_id])
    data = client_for(world.bob).get(url).json()
    assert data["number"] == world.account_a.number
    assert data["role"] == "viewer"
    assert data["scopes"] == ["billing:read", "meters:read"]


def test_non_members_get_404_and_members_without_scope_403(
    world: World, client_for: ClientFor
) -> None:
    members = reverse("tenancy:api_account_members", args=[world.account_a.public_id])
    assert client_for(world.charlie).get(members).status_code == 404
    assert client_for(world.bob).get(members).status_code == 403
    data = client_for(world.alice).get(members).json()
    assert {m["email"] for m in data} == {
        "alice@example.com",
        "bob@example.com",
        "pat@example.com",
        "max@example.com",
    }


def test_organisation_accounts_are_cursor_paginated_over_the_subtree(
    world: World, client_for: ClientFor
) -> None:
    for index in range(5):
        make_account(f"Extra {index}", organisation=world.sub2)
    client = client_for(world.group_manager)
    url = reverse("tenancy:api_organisation_accounts", args=[world.group.public_id])
    page = client.get(url, {"page_size": 4}).json()
    numbers = [a["number"] for a in page["results"]]
    assert len(numbers) == 4 and numbers == sorted(numbers)
    second = client.get(page["next"]).json()
    assert len(second["results"]) == 3
    assert second["next"] is None
    # A subsidiary manager sees only their subtree.
    sub1 = client_for(world.sub1_manager)
    url1 = reverse("tenancy:api_organisation_accounts", args=[world.sub1.public_id])
    assert [a["name"] for a in sub1.get(url1).json()["results"]] == ["Acc 1"]


def test_organisation_detail_lists_subsidiaries(world: World, client_for: ClientFor) -> None:
    data = (
        client_for(world.group_manager)
        .get(reverse("tenancy:api_organisation_detail", args=[world.group.public_id]))
        .json()
    )
    assert sorted(s["name"] for s in data["subsidiaries"]) == ["Sub 1", "Sub 2"]
    assert data["parent_id"] is None


def test_the_openapi_schema_and_docs_are_served_locally(
    client_for: ClientFor, world: World
) -> None:
    client = client_for(world.alice)
    schema = client.get(reverse("api_schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/v1/accounts/{account_id}/" in schema.content.decode()
    docs = client.get(reverse("api_docs")).content.decode()
    assert "cdn" not in docs.lower()
