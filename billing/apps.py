from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = _("Billing")

    def ready(self) -> None:
        # Charts live in meters, which may not import billing: billing offers its prices.
        from billing.usage_costs import usage_costs
        from meters.costs import cost_estimator_register

        cost_estimator_register(usage_costs)
