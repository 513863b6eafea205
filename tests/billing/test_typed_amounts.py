"""The top-up page and the top-up API refuse a bad amount alike, with the same reason
(portal.lib.money.parse_amount), and make no top-up."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from billing.models import TopUp
from portal.tenancy.roles import Role
from tests.billing.helpers import supplied
from tests.factories import make_membership, make_user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("1,000", "Enter a number."),
        ("NaN", "Enter a number."),
        ("1e3", "Enter a number."),
        ("-5", "Enter an amount above zero."),
        ("100.005", "Ensure that there are no more than 2 decimal places."),
    ],
)
def test_the_form_and_the_api_refuse_a_bad_amount_alike(amount: str, message: str) -> None:
    account, _sp, _wallet = supplied()
    user = make_user()
    make_membership(user, Role.PAYER, account=account)
    client = Client()
    client.force_login(user)
    page = client.post(
        reverse("billing:topup", args=[account.public_id]),
        {"amount": amount, "idempotency_key": "k"},
    )
    api = client.post(
        reverse("billing:api_topups", kwargs={"account_id": account.public_id}),
        {"amount": amount},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert page.status_code == api.status_code == 400
    assert message in page.content.decode()
    assert api.json()["amount"] == [message]
    assert not TopUp.objects.exists()


def test_the_api_takes_a_json_number_as_written() -> None:
    account, _sp, _wallet = supplied()
    user = make_user()
    make_membership(user, Role.PAYER, account=account)
    client = Client()
    client.force_login(user)
    url = reverse("billing:api_topups", kwargs={"account_id": account.public_id})
    created = client.post(
        url, {"amount": 100.5}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="n"
    )
    assert created.status_code == 201
    assert TopUp.objects.get().amount == 100_50
    missing = client.post(url, {}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="m")
    assert missing.status_code == 400 and "amount" in missing.json()
