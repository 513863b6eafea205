"""The billing app's permissions for the staff groups created in users.0002.

Billing officers run tariffs, holidays, wallets, top-ups (refunds, adjustments), bills and bill
runs and warning policies; support sees wallets, top-ups, bills and warnings to answer
customers; auditors see everything and change nothing. Ledger entries and postings are never
added, changed or deleted through the admin by anyone. Lists are copied here on purpose: a
migration must not import app code.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_ALL = [
    "view_tariff", "view_tariffversion", "view_tariffassignment", "view_holiday",
    "view_ledgeraccount", "view_wallet", "view_journalentry", "view_posting", "view_dailycharge",
    "view_topup", "view_webhookevent", "view_billrun", "view_bill", "view_billline",
    "view_warningpolicy", "view_shortagewarning", "view_notification",
]
GROUPS = {
    "billing officer": [
        *VIEW_ALL,
        "add_tariff", "change_tariff", "add_tariffversion", "change_tariffversion",
        "add_tariffassignment", "add_holiday", "change_holiday", "delete_holiday",
        "change_wallet", "change_topup", "add_billrun", "change_bill",
        "add_warningpolicy", "change_warningpolicy", "delete_warningpolicy",
    ],
    "support": [
        "view_wallet", "view_journalentry", "view_dailycharge", "view_topup", "view_bill",
        "view_shortagewarning", "view_notification", "view_tariff", "view_tariffassignment",
    ],
    "auditor": VIEW_ALL,
}


def add_permissions(apps, schema_editor):
    app_config = apps.get_app_config("billing")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUPS.items():
        group = Group.objects.get(name=name)
        permissions = Permission.objects.filter(
            content_type__app_label="billing", codename__in=codenames
        )
        missing = set(codenames) - set(permissions.values_list("codename", flat=True))
        if missing:
            raise RuntimeError(f"permissions not found for group {name}: {sorted(missing)}")
        group.permissions.add(*permissions)


def remove_permissions(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name in GROUPS:
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.remove(
                *Permission.objects.filter(content_type__app_label="billing")
            )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0002_ledger_integrity"),
        ("users", "0002_staff_groups"),
    ]

    operations = [migrations.RunPython(add_permissions, remove_permissions)]
