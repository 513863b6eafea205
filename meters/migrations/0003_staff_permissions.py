"""The meters app's permissions for the staff groups created in users.0002.

Metering technicians run the fleet, imports, corrections, events and commands; support sees
them to answer customers; billing officers see supplies and readings' provenance; auditors see
everything and change nothing. Lists are copied here on purpose: a migration must not import
app code.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_ALL = [
    "view_servicepoint", "view_meter", "view_register", "view_meterinstallation", "view_supply",
    "view_importbatch", "view_readingedit", "view_readingconflict", "view_meterevent",
    "view_metercommand",
]
GROUPS = {
    "metering technician": [
        *VIEW_ALL,
        "add_servicepoint", "change_servicepoint", "add_meter", "change_meter",
        "add_register", "change_register", "add_meterinstallation", "change_meterinstallation",
        "add_supply", "change_supply", "add_importbatch", "add_readingedit",
        "change_meterevent", "add_metercommand",
    ],
    "support": [
        "view_servicepoint", "view_meter", "view_supply", "view_meterevent", "view_importbatch",
        "change_meterevent", "add_supply", "change_supply",
    ],
    "billing officer": ["view_servicepoint", "view_meter", "view_supply", "view_readingedit"],
    "auditor": VIEW_ALL,
}


def add_permissions(apps, schema_editor):
    app_config = apps.get_app_config("meters")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUPS.items():
        group = Group.objects.get(name=name)
        permissions = Permission.objects.filter(
            content_type__app_label="meters", codename__in=codenames
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
                *Permission.objects.filter(content_type__app_label="meters")
            )


class Migration(migrations.Migration):
    dependencies = [
        ("meters", "0002_reading_partitions"),
        ("users", "0002_staff_groups"),
    ]

    operations = [migrations.RunPython(add_permissions, remove_permissions)]
