"""Every issued bill has its printed number and payment reference (0006 filled them in)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0006_bill_numbers_backfill"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="bill", name="billing_bill_numbered_when_issued"),
        migrations.AddConstraint(
            model_name="bill",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("status", "draft"),
                    models.Q(
                        ("sequence_number__isnull", False),
                        models.Q(("number", ""), _negated=True),
                        models.Q(("payment_reference", ""), _negated=True),
                    ),
                    _connector="OR",
                ),
                name="billing_bill_numbered_when_issued",
            ),
        ),
    ]
