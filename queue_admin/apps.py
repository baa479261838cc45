from django.apps import AppConfig


class QueueAdminConfig(AppConfig):
    name = "queue_admin"
    verbose_name = "Embedding queue"

    def ready(self):
        from queue_admin import signals  # noqa: F401  (connects the receivers)
