"""The notifications app's permission for the staff groups created in users.0002: support and
auditors see the notification list, as they did when it was billing's. Lists are copied here on
purpose: a migration must not import app code."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUPS = {"support": ["view_notification"], "auditor": ["view_notification"]}


def add_permissions(apps, schema_editor):
    app_config = apps.get_app_config("notifications")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUPS.items():
        group = Group.objects.get(name=name)
        group.permissions.add(
            *Permission.objects.filter(
                content_type__app_label="notifications", codename__in=codenames
            )
        )


def remove_permissions(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name__in=list(GROUPS)):
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="notifications")
        )


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
        ("users", "0002_staff_groups"),
    ]

    operations = [migrations.RunPython(add_permissions, remove_permissions)]
