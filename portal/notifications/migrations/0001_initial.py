# The notifications app: one message per person and channel, and per-topic preferences.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('tenancy', '0007_organisation_time_zone_from_accounts'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Notification',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('topic', models.CharField(choices=[('shortage', 'low credit'), ('bill_issued', 'bill issued'), ('bill_overdue', 'bill overdue'), ('leak', 'leak or water flowing at night'), ('tamper', 'tampering with a meter'), ('comms_loss', 'meter out of contact'), ('valve', 'valve opened or closed')], max_length=16, verbose_name='topic')),
                ('channel', models.CharField(choices=[('email', 'email'), ('sms', 'SMS')], max_length=8, verbose_name='channel')),
                ('key', models.CharField(max_length=64, verbose_name='about')),
                ('texts', models.JSONField(blank=True, default=dict, verbose_name='texts')),
                ('status', models.CharField(choices=[('queued', 'queued'), ('sent', 'sent'), ('failed', 'failed'), ('suppressed', 'not sent (preferences)')], default='queued', max_length=16, verbose_name='status')),
                ('error', models.CharField(blank=True, max_length=300, verbose_name='error')),
                ('created_at', models.DateTimeField(verbose_name='created')),
                ('sent_at', models.DateTimeField(blank=True, null=True, verbose_name='sent')),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='tenancy.account', verbose_name='account')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='person')),
            ],
            options={
                'verbose_name': 'notification',
                'verbose_name_plural': 'notifications',
                'constraints': [models.UniqueConstraint(fields=('key', 'user', 'channel'), name='notifications_notification_once')],
            },
        ),
        migrations.CreateModel(
            name='NotificationPreference',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('topic', models.CharField(choices=[('shortage', 'low credit'), ('bill_issued', 'bill issued'), ('bill_overdue', 'bill overdue'), ('leak', 'leak or water flowing at night'), ('tamper', 'tampering with a meter'), ('comms_loss', 'meter out of contact'), ('valve', 'valve opened or closed')], max_length=16)),
                ('email', models.BooleanField(default=True, verbose_name='email')),
                ('sms', models.BooleanField(default=False, verbose_name='SMS')),
                ('phone', models.CharField(blank=True, max_length=20, verbose_name='mobile number')),
                ('quiet_start', models.TimeField(blank=True, null=True, verbose_name='quiet from')),
                ('quiet_end', models.TimeField(blank=True, null=True, verbose_name='quiet until')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'notification preference',
                'verbose_name_plural': 'notification preferences',
                'constraints': [models.UniqueConstraint(fields=('user', 'topic'), name='notifications_preference_once')],
            },
        ),
    ]
