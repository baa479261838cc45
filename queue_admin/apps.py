from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class QueueAdminConfig(AppConfig):
    name = "queue_admin"
    verbose_name = _("Embedding queue")

    def ready(self):
        from queue_admin import signals  # noqa: F401  (connects the receivers)
