# Billing's notification tables, emptied into the notifications app by 0012, go.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0012_notifications_moved'),
    ]

    operations = [
        migrations.DeleteModel(
            name='Notification',
        ),
        migrations.DeleteModel(
            name='NotificationPreference',
        ),
    ]
