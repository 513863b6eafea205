"""Billing reads: wallets, ledger lines, charges, tariffs in force."""

from __future__ import annotations

import datetime as dt

from billing.models import TariffVersion, Wallet


def wallet_for_account(*, account_id: int) -> Wallet | None:
    return Wallet.objects.for_account(account_id).select_related("account").first()


def tariff_version_on(*, tariff_id: int, day: dt.date) -> TariffVersion | None:
    """The version of a tariff in force on a local day, if any."""
    return (
        TariffVersion.objects.filter(tariff_id=tariff_id, valid_from__lte=day)
        .exclude(valid_to__lte=day)
        .first()
    )
