# The language a person reads messages in (empty: every language).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('users', '0004_staff_factor_approval'),
    ]

    operations = [
        migrations.AddField(
            model_name='user',
            name='language',
            field=models.CharField(blank=True, default='', max_length=16, verbose_name='language of messages'),
        ),
    ]
