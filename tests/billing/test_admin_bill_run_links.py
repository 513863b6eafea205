"""The bill-run start page is linked from the admin: the bill runs' list (an object tool) and
the admin index's billing section (and its sidebar), for staff who may start a run."""

from __future__ import annotations

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from portal.users.models import User
from tests.factories import make_user

pytestmark = pytest.mark.django_db

START = "admin:billing_billrun_start"


def _client(user: User) -> Client:
    TOTP.activate(user, generate_totp_secret())
    client = Client()
    client.force_login(user)
    return client


def _billing_section(html: str) -> str:
    start = html.index('class="app-billing')
    return html[start : html.index("</table>", start)]


def test_the_start_page_is_linked_from_the_list_and_the_index() -> None:
    client = _client(make_user("root@utility.example", staff=True))
    start = reverse(START)
    listed = client.get(reverse("admin:billing_billrun_changelist")).content.decode()
    tools = listed[listed.index('class="object-tools"') :]
    assert f'href="{start}"' in tools[: tools.index("</ul>")]
    index = client.get(reverse("admin:index")).content.decode()
    assert f'href="{start}"' in _billing_section(index)
    # The sidebar of every admin page lists it too.
    assert f'href="{start}"' in listed[: listed.index('class="object-tools"')]
    assert client.get(start).status_code == 200


def test_staff_who_may_not_start_a_run_get_no_link() -> None:
    officer = make_user("reader@utility.example", staff=True)
    officer.is_superuser = False
    officer.save()
    officer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_billrun", "view_bill"])
    )
    client = _client(officer)
    start = reverse(START)
    listed = client.get(reverse("admin:billing_billrun_changelist"))
    assert listed.status_code == 200
    assert f'href="{start}"' not in listed.content.decode()
    assert f'href="{start}"' not in client.get(reverse("admin:index")).content.decode()
