from django.db import migrations


class Migration(migrations.Migration):
    """Account numbers come from their own sequence (see services._next_account_number)."""

    dependencies = [("tenancy", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "CREATE SEQUENCE tenancy_account_number_seq START 1000001",
            "DROP SEQUENCE tenancy_account_number_seq",
        ),
    ]
