"""Organisations get a time zone for their own pages (audit log, invitations, API keys)."""

import portal.lib.timezones
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tenancy', '0005_admin_labels'),
    ]

    operations = [
        migrations.AddField(
            model_name='organisation',
            name='time_zone',
            field=models.CharField(default=portal.lib.timezones.default_time_zone, help_text="Times on the organisation's pages are shown in this zone, e.g. Asia/Taipei.", max_length=64, validators=[portal.lib.timezones.validate_time_zone], verbose_name='time zone'),
        ),
    ]
