"""API key permissions for the staff groups: support may revoke a leaked key; auditors see."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUPS = {
    "support": ["view_organisationapikey", "change_organisationapikey"],
    "auditor": ["view_organisationapikey"],
}


def add_permissions(apps, schema_editor):
    app_config = apps.get_app_config("tenancy")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUPS.items():
        permissions = Permission.objects.filter(
            content_type__app_label="tenancy", codename__in=codenames
        )
        if permissions.count() != len(codenames):
            raise RuntimeError(f"permissions not found for group {name}: {codenames}")
        Group.objects.get(name=name).permissions.add(*permissions)


def remove_permissions(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUPS.items():
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.remove(
                *Permission.objects.filter(
                    content_type__app_label="tenancy", codename__in=codenames
                )
            )


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0003_organisation_api_keys"),
        ("users", "0002_staff_groups"),
    ]

    operations = [migrations.RunPython(add_permissions, remove_permissions)]
