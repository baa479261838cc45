from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "documents"
    verbose_name = "Documents and embeddings"

    def ready(self):
        # Stop every process (web, workers, commands) at start-up, not at the first batch, when
        # the configured providers would write vectors that don't belong in the column.
        from documents.providers.factory import check_provider_settings

        check_provider_settings()
