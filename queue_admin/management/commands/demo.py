"""`make demo`: the embedded PostgreSQL, the schema, a login, the sample documents and their
search judgments, then the workers and the web server, with a progress line for the embedding
of the samples, and the URL and login as the last lines on screen. Development only.

Quiet by default: a few plain lines here, and the workers' and the server's own logs in
`.data/demo.log`. `--verbose` (DEMO_VERBOSE=1 for make) shows their output here instead, as
the demo used to.
"""

import io
import logging
import signal
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from tqdm import tqdm

from documents.samples import load_sample_documents
from queue_admin import demo, search_quality


class Command(BaseCommand):
    help = (
        "Set up and run the demo: database, login, sample documents, workers, web server. Development only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="where the web server listens")
        parser.add_argument(
            "--documents", type=int, default=500, help="sample documents in all (default 500)"
        )
        parser.add_argument("--log", type=Path, help="where their logs go (default .data/demo.log)")
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="admin")
        parser.add_argument(
            "--verbose", action="store_true", help="the workers' and server's logs here, not in a file"
        )

    def handle(self, *args, addr, documents, username, password, verbose, log=None, **options):
        # Ctrl-C and SIGTERM both stop the demo in order, even when it was started from a
        # background job (which inherits SIGINT ignored).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
        if not verbose:
            # Our own plain lines instead of every INFO record of the steps below.
            logging.getLogger().setLevel(logging.WARNING)
        say = self.stdout.write
        if settings.EMBEDDED_DB:
            call_command("embedded_db", "start", stdout=io.StringIO())
        say(f"Database: {describe_database()}")
        call_command("migrate", interactive=False, verbosity=0)
        say("Database schema: up to date")
        call_command("demo_admin", username=username, password=password, stdout=io.StringIO())
        say(f"Login: {username} / {password}")
        inserted, present = load_sample_documents(documents)
        say(
            f"Sample documents: {inserted + present:,} ({inserted:,} new), queued for embedding by the database triggers"
        )
        recorded, _ = search_quality.load_sample_judgments()
        say(f"Search judgments of the samples: {recorded} (Search quality page)")

        log_path = log or demo.log_path()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        url = f"http://{addr}/admin/"
        with open(log_path, "a") as log:
            workers = demo.start(["qcluster"], log, verbose)
            server = demo.start(["runserver", "--noreload", addr], log, verbose)
            processes = [server, workers]
            try:
                if not demo.wait_until_answering(f"http://{addr}/healthz", server):
                    say(self.style.ERROR(f"The web server did not start: see {log_path}"))
                    return
                say(f"Workers and web server started; their logs: {log_path}")
                self._show_progress(say, url, username, password, processes)
                self._show_address(say, url, username, password)
                while all(process.poll() is None for process in processes):
                    time.sleep(0.5)
                say(self.style.ERROR(f"A demo process exited: see {log_path}"))
            except KeyboardInterrupt:
                say("\nStopping the workers and the web server …")
            finally:
                demo.stop(processes)
        say("Stopped. The database keeps running (make db-stop stops it).")

    def _show_address(self, say, url, username, password):
        say(f"\n  Sidecar admin:  {url}\n  Login:          {username} / {password}\n"
            "  Ctrl-C stops the web server and workers; the database keeps running (make db-stop).\n")  # fmt: skip

    def _show_progress(self, say, url, username, password, processes):
        """A live line for the embedding of the documents until none is waiting (the admin
        works meanwhile: its address is said first, and again as the last lines)."""
        progress = demo.embedding_progress()
        if progress.finished:
            return
        say(f"The admin is ready at {url} ({username} / {password}) while the samples are embedded:")
        with tqdm(
            total=progress.total, initial=progress.done, unit="docs", desc="Embedding", dynamic_ncols=True
        ) as bar:
            while not progress.finished and all(process.poll() is None for process in processes):
                time.sleep(1)
                progress = demo.embedding_progress()
                bar.update(progress.done - bar.n)
                if progress.failed:
                    bar.set_postfix(failed=progress.failed)
        if progress.failed:
            say(f"{progress.failed} document(s) failed: the admin's Dead letters list says why.")


def _interrupt(number, frame):
    raise KeyboardInterrupt


def describe_database() -> str:
    if settings.EMBEDDED_DB:
        return f"embedded PostgreSQL on 127.0.0.1:{settings.EMBEDDED_DB_PORT} (data in {settings.EMBEDDED_DB_DIR})"
    return "DATABASE_URL"
