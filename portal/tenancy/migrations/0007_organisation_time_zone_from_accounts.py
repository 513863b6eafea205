"""Existing organisations take the zone most of their subtree's accounts are in.

They were created before organisations had a zone, and 0005 gave them the site's (UTC), which
would show a Taipei group's audit log in UTC. An organisation without accounts beneath it
keeps the site's zone; staff can change any of them in the admin.
"""

from collections import Counter

from django.db import migrations


def zones_from_accounts(apps, schema_editor):
    Organisation = apps.get_model("tenancy", "Organisation")
    Account = apps.get_model("tenancy", "Account")
    for organisation in Organisation.objects.all():
        zones = Counter(
            Account.objects.filter(organisation__path__startswith=organisation.path).values_list(
                "time_zone", flat=True
            )
        )
        if zones:
            # The most common zone; on a tie, the first in alphabetical order, so re-runs agree.
            zone = min(zones, key=lambda name: (-zones[name], name))
            Organisation.objects.filter(pk=organisation.pk).update(time_zone=zone)


class Migration(migrations.Migration):
    dependencies = [("tenancy", "0006_organisation_time_zone")]

    operations = [migrations.RunPython(zones_from_accounts, migrations.RunPython.noop)]
