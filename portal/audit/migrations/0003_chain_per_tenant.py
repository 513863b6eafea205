from django.db import migrations, models

# One hash chain per tenant root instead of one for everything (see portal/audit/chain.py).
# Every entry written so far stays exactly as it was: they all join the "global" chain, whose
# hash form is the old one, in the id order they were chained in. Adding a column with a
# constant default changes no row (PostgreSQL stores the default once; no UPDATE runs, so the
# append-only trigger is not involved). Old checkpoints keep describing the global chain's head.


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_triggers")]

    operations = [
        migrations.AddField(
            model_name="auditlogentry",
            name="chain",
            field=models.CharField(default="global", max_length=32, verbose_name="chain"),
            preserve_default=False,
        ),
        migrations.AddIndex(
            model_name="auditlogentry",
            index=models.Index(fields=["chain", "id"], name="audit_entry_chain_id"),
        ),
        migrations.AlterField(
            model_name="auditcheckpoint",
            name="entries_verified",
            field=models.BigIntegerField(blank=True, null=True, verbose_name="entries verified"),
        ),
        migrations.AddField(
            model_name="auditcheckpoint",
            name="heads",
            field=models.JSONField(default=dict, verbose_name="chain heads"),
        ),
        migrations.AddField(
            model_name="auditcheckpoint",
            name="prev_hash",
            field=models.CharField(
                blank=True, default="", max_length=64, verbose_name="previous hash"
            ),
        ),
        migrations.AddField(
            model_name="auditcheckpoint",
            name="hash",
            field=models.CharField(blank=True, default="", max_length=64, verbose_name="hash"),
        ),
    ]
