"""Sources: where documents come from. Every existing document belongs to the built-in source
(id 1, "documents"), made here before the column that points at it; the column's constant
default makes adding it a catalog change, so no row is rewritten and nothing is re-embedded
(the enqueue triggers fire on row writes only)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import documents.validators


class Migration(migrations.Migration):
    dependencies = [
        ("documents", "0006_hnsw_ef_construction_128"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Source",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "name",
                    models.CharField(
                        max_length=100, unique=True, validators=[documents.validators.validate_source_name]
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[("builtin", "Sidecar's documents"), ("table", "Database table")],
                        max_length=20,
                    ),
                ),
                ("options", models.JSONField(blank=True, default=dict)),
                (
                    "default_priority",
                    models.CharField(
                        choices=[("high", "High"), ("medium", "Medium"), ("low", "Low")],
                        default="medium",
                        max_length=10,
                    ),
                ),
                ("enabled", models.BooleanField(default=True)),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("attaching", "attaching (copying existing rows)"),
                            ("active", "active"),
                            ("broken", "broken"),
                            ("detaching", "detaching"),
                        ],
                        default="active",
                        max_length=20,
                    ),
                ),
                ("state_reason", models.TextField(blank=True, default="")),
                ("rows_total", models.BigIntegerField(blank=True, null=True)),
                ("rows_done", models.BigIntegerField(default=0)),
                ("last_synced_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "db_table": "document_sources",
                "ordering": ["id"],
            },
        ),
        migrations.RunSQL(
            "INSERT INTO document_sources (id, name, kind, options, default_priority, enabled, state, "
            "state_reason, rows_done, created_at) "
            "VALUES (1, 'documents', 'builtin', '{}', 'medium', true, 'active', '', 0, now()); "
            "SELECT setval(pg_get_serial_sequence('document_sources', 'id'), 1)",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AddField(
            model_name="sourcedocument",
            name="source_key",
            field=models.TextField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="sourcedocument",
            name="source",
            field=models.ForeignKey(
                db_default=1,
                default=1,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="documents",
                to="documents.source",
            ),
        ),
        # Checked at each statement's end, not at commit (Django makes every foreign key
        # deferred): a writer that loads documents and then alters or disables triggers in the
        # same transaction must not find the table busy with pending checks.
        migrations.RunSQL(
            """DO $$
            DECLARE fk text;
            BEGIN
              SELECT conname INTO STRICT fk FROM pg_constraint
               WHERE conrelid = 'source_documents'::regclass AND confrelid = 'document_sources'::regclass;
              EXECUTE format('ALTER TABLE source_documents ALTER CONSTRAINT %I NOT DEFERRABLE', fk);
            END $$""",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AddConstraint(
            model_name="sourcedocument",
            constraint=models.UniqueConstraint(
                fields=("source", "source_key"), name="source_documents_source_key_uniq"
            ),
        ),
    ]
