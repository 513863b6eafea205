"""Staff roles as Django groups, with the permissions of the apps that exist so far.

Later migrations (meters, billing) add their models' permissions to these groups. The lists are
copied here on purpose: a migration must not import app code.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUPS = {
    "support": [
        "view_user", "change_user",
        "view_organisation", "view_account", "change_account",
        "view_membership", "add_membership", "change_membership", "delete_membership",
        "view_invitation",
    ],
    "billing officer": [
        "view_user", "view_organisation", "view_account", "change_account", "view_membership",
    ],
    "metering technician": [
        "view_organisation", "view_account",
    ],
    "auditor": [
        "view_user", "view_organisation", "view_account", "view_membership", "view_invitation",
        "view_auditlogentry", "view_auditcheckpoint",
    ],
}
APPS = ("users", "tenancy", "audit")


def create_groups(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure ours exist now.
    for app_config in apps.get_app_configs():
        if app_config.label in APPS:
            app_config.models_module = True
            create_permissions(app_config, apps=apps, verbosity=0)
            app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = Permission.objects.filter(
            content_type__app_label__in=APPS, codename__in=codenames
        )
        missing = set(codenames) - set(permissions.values_list("codename", flat=True))
        if missing:
            raise RuntimeError(f"permissions not found for group {name}: {sorted(missing)}")
        group.permissions.add(*permissions)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(GROUPS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0001_initial"),
        ("tenancy", "0001_initial"),
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
