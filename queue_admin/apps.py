from django.apps import AppConfig


class QueueAdminConfig(AppConfig):
    name = "queue_admin"
    verbose_name = "Embedding queue"
