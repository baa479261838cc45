from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class DocumentsConfig(AppConfig):
    name = "documents"
    verbose_name = _("Documents and embeddings")

    def ready(self):
        # Stop every process (web, workers, commands) at start-up, not at the first batch, when
        # the configured providers would write vectors that don't belong in the column.
        from documents.providers.factory import check_provider_settings

        check_provider_settings()
        post_migrate.connect(ensure_builtin_source, sender=self)


def ensure_builtin_source(sender, apps=None, using="default", **kwargs):
    """Every document without another source belongs to the built-in one, so it must exist:
    after migrate, and after a flush (which empties every table, then sends post_migrate, as
    it does for Django's own content types)."""
    from django.apps import apps as current_apps

    from documents.models import BUILTIN_SOURCE_ID

    apps = apps or current_apps  # flush sends no migration state
    try:
        source_model = apps.get_model("documents", "Source")
    except LookupError:  # migrated back to before sources
        return
    source_model.objects.using(using).get_or_create(
        pk=BUILTIN_SOURCE_ID, defaults={"name": "documents", "kind": "builtin"}
    )
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('document_sources', 'id'), "
            "(SELECT max(id) FROM document_sources))"
        )
