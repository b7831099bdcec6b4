from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ports", "0016_directory_accounts"),
    ]

    operations = [
        migrations.AddField(
            model_name="checklistitem",
            name="changed_in",
            field=models.PositiveBigIntegerField(default=0, editable=False),
        ),
        migrations.AddIndex(
            model_name="checklistitem",
            index=models.Index(fields=["deployment", "changed_in"], name="checklistitem_changed_in"),
        ),
    ]
