import argparse
import json
import time

from django.core.management.base import BaseCommand, CommandError

from queue_admin.status import format_status, queue_status


class Command(BaseCommand):
    help = (
        "The queue's figures: counts by status and priority, oldest pending age, throughput over "
        "the last 15 minutes, live workers, breaker, queue switch, model. --json for scripts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="one JSON object (keys: see README)")
        parser.add_argument(
            "--watch", action="store_true", help="refresh every --interval seconds until Ctrl-C"
        )
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (--watch)")
        # For tests: stop --watch after this many refreshes.
        parser.add_argument("--iterations", type=int, default=None, help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        if options["interval"] <= 0:
            raise CommandError("--interval must be a positive number of seconds.")
        iterations = options["iterations"] if options["watch"] else 1
        shown = 0
        try:
            while iterations is None or shown < iterations:
                if shown:
                    time.sleep(options["interval"])
                status = queue_status()
                if options["json"]:
                    self.stdout.write(json.dumps(status, sort_keys=True))
                else:
                    if options["watch"] and self.stdout.isatty():
                        self.stdout.write("\033[2J\033[H", ending="")  # clear the screen
                    self.stdout.write(format_status(status) + ("\n" if options["watch"] else ""))
                self.stdout.flush()
                shown += 1
        except KeyboardInterrupt:  # Ctrl-C is how --watch ends: no traceback
            self.stdout.write("")
