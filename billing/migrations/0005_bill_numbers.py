"""Bill numbers people can read and quote: `HR-2026-000123` and a payment reference.

The integer of the issuer's gap-free series becomes `sequence_number`; `number` is the printed
number, unique across issuers; each organisation's series gets a prefix. Schema only: 0006
fills in the bills issued before, 0007 then requires both of every issued bill.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0004_data_export"),
        ("tenancy", "0004_api_key_permissions"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="bill", name="billing_bill_number_unique"),
        migrations.RemoveConstraint(model_name="bill", name="billing_bill_numbered_when_issued"),
        migrations.RenameField(model_name="bill", old_name="number", new_name="sequence_number"),
        migrations.AlterField(
            model_name="bill",
            name="sequence_number",
            field=models.PositiveIntegerField(
                blank=True, null=True, verbose_name="sequence number"
            ),
        ),
        migrations.AddField(
            model_name="bill",
            name="number",
            field=models.CharField(
                blank=True, db_default="", default="", max_length=32, verbose_name="number"
            ),
        ),
        migrations.AddField(
            model_name="bill",
            name="payment_reference",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                max_length=64,
                verbose_name="payment reference",
            ),
        ),
        migrations.AddField(
            model_name="billsequence",
            name="prefix",
            field=models.CharField(
                blank=True,
                help_text="Capital letters and digits, printed before the year in bill numbers.",
                max_length=12,
                verbose_name="bill number prefix",
            ),
        ),
        migrations.AddConstraint(
            model_name="bill",
            constraint=models.UniqueConstraint(
                condition=models.Q(("sequence_number__isnull", False)),
                fields=("organisation", "sequence_number"),
                name="billing_bill_sequence_unique",
                nulls_distinct=False,
            ),
        ),
        migrations.AddConstraint(
            model_name="bill",
            constraint=models.UniqueConstraint(
                condition=models.Q(("number", ""), _negated=True),
                fields=("number",),
                name="billing_bill_number_unique",
            ),
        ),
        migrations.AddConstraint(
            model_name="bill",
            constraint=models.UniqueConstraint(
                condition=models.Q(("payment_reference", ""), _negated=True),
                fields=("payment_reference",),
                name="billing_bill_payment_reference_unique",
            ),
        ),
        # What held before, under the field's new name; 0007 requires the printed number too.
        migrations.AddConstraint(
            model_name="bill",
            constraint=models.CheckConstraint(
                condition=models.Q(("status", "draft"), ("sequence_number__isnull", False), _connector="OR"),
                name="billing_bill_numbered_when_issued",
            ),
        ),
        migrations.AddConstraint(
            model_name="billsequence",
            constraint=models.UniqueConstraint(
                condition=models.Q(("prefix", ""), _negated=True),
                fields=("prefix",),
                name="billing_billsequence_prefix_unique",
            ),
        ),
        migrations.AddConstraint(
            model_name="billsequence",
            constraint=models.CheckConstraint(
                condition=models.Q(("prefix__regex", "^[A-Z0-9]{0,12}$")),
                name="billing_billsequence_prefix_form",
            ),
        ),
    ]
