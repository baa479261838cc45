"""Start, stop or inspect the embedded PostgreSQL (used when DATABASE_URL is not set).

The server also starts by itself on the first database connection; it outlives the process
that started it, so `stop` is how it ends. `status` exits 0 when it runs and 3 when it does
not, like `pg_ctl status`.
"""

import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from embedding_site import embedded_pg

NOT_RUNNING_EXIT_CODE = 3


class Command(BaseCommand):
    help = "Start, stop or inspect the embedded PostgreSQL used when DATABASE_URL is not set."
    # System checks could open a database connection, which would start the server: `stop`
    # and `status` must not.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["start", "stop", "status", "url"])

    def handle(self, *args, action, **options):
        data_dir, port = settings.EMBEDDED_DB_DIR, settings.EMBEDDED_DB_PORT
        if not settings.EMBEDDED_DB:
            message = (
                "DATABASE_URL is set, so Sidecar uses that database and the embedded PostgreSQL is not used."
            )
            if action == "status":
                self.stdout.write(f"not used: {message}")
                sys.exit(NOT_RUNNING_EXIT_CODE)
            raise CommandError(f"{message} Unset DATABASE_URL to use the embedded server.")
        try:
            if action == "start":
                embedded_pg.ensure_running(data_dir, port)
                self.stdout.write(self._describe(embedded_pg.status(data_dir)))
            elif action == "stop":
                stopped = embedded_pg.stop(data_dir)
                self.stdout.write(
                    f"stopped (data in {data_dir})" if stopped else f"not running (data in {data_dir})"
                )
            elif action == "status":
                state = embedded_pg.status(data_dir)
                self.stdout.write(self._describe(state))
                if not state["running"]:
                    sys.exit(NOT_RUNNING_EXIT_CODE)
            else:
                self.stdout.write(embedded_pg.url(port))
        except embedded_pg.EmbeddedDBError as exc:
            raise CommandError(str(exc)) from exc

    def _describe(self, state: dict) -> str:
        if not state["running"]:
            return f"not running (data in {state['data_dir']})"
        return (
            f"running on {embedded_pg.HOST}:{state['port']} (pid {state['pid']}), data in {state['data_dir']}"
        )
