"""A gas service point metered in energy (its registers are Wh) shows kWh everywhere: on the
account home, on the usage page and in the usage CSV. The home page used to decide by kind
and said m³."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
import time_machine
from django.test import Client

from meters.models import Meter, MeterInstallation, Register, RollupDaily, ServicePoint
from meters.services.supply import supply_start
from portal.tenancy.roles import Role
from tests.factories import SYSTEM, make_account, make_membership, make_user

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 5, 20, 4, 0, tzinfo=dt.UTC)


def test_gas_metered_in_wh_shows_kwh_on_the_home_page_the_usage_page_and_the_csv() -> None:
    account = make_account("Gas by energy")
    sp = ServicePoint.objects.create(code="SP-GWH", kind="gas", time_zone="Asia/Taipei")
    meter = Meter.objects.create(serial="M-GWH", kind="gas", max_rate=50_000)
    MeterInstallation.objects.create(
        meter=meter, service_point=sp, installed_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    )
    Register.objects.create(meter=meter, code="import", unit="Wh", is_main=True)
    supply_start(
        account=account,
        service_point=sp,
        start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        actor=SYSTEM,
    )
    for day in range(1, 20):
        RollupDaily.objects.create(
            service_point=sp,
            direction="import",
            day=dt.date(2026, 5, day),
            account=account,
            consumption=12_000,
            reading_count=96,
            hours=24,
        )
    user = make_user()
    make_membership(user, Role.OWNER, account=account)
    client = Client()
    client.force_login(user)
    with time_machine.travel(NOW, tick=False):
        home = client.get(f"/a/{account.public_id}/")
        page = client.get(
            f"/a/{account.public_id}/usage/", {"service_point": str(sp.public_id), "range": "month"}
        )
        exported = client.get(
            f"/a/{account.public_id}/usage/",
            {"service_point": str(sp.public_id), "range": "month", "format": "csv"},
        )
    assert home.status_code == page.status_code == exported.status_code == 200
    (usage,) = [p for p in home.context["panels"] if p.template == "web/panels/usage.html"]
    assert [(r["kind"], r["unit"]) for r in usage.context["rows"]] == [("gas", "kWh")]
    assert "kWh" in home.content.decode() and "m³" not in home.content.decode()
    assert page.context["unit"] == "kWh"
    header = next(csv.reader(io.StringIO(exported.content.decode())))
    assert "consumption_kWh" in header
