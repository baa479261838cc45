import multiprocessing
import signal
import time
from dataclasses import asdict, fields

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from documents.providers.factory import get_provider
from queue_admin.worker import BatchReport, QueueWorker


def _run_worker(options: dict, results) -> None:
    """One worker process: SIGTERM finishes the request in hand, gives the rest of the batch
    back, then stops.

    With --workers 1 this runs in the caller's process (call_command, tests), so the previous
    handlers are put back: left behind, they would make that process, and anything it forks
    later, ignore SIGTERM (a multiprocessing Pool could then never terminate its children).
    """
    worker = QueueWorker(get_provider(), name="process_queue")
    stop = lambda *_: worker.stop_requested.set()  # noqa: E731
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    deadline = time.monotonic() + options["seconds"] if options["seconds"] else None
    try:
        with worker:
            report = worker.run(
                until_empty=options["until_empty"], max_batches=options["max_batches"], deadline=deadline
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if results is not None:
        results.put(asdict(report))
    return report


class Command(BaseCommand):
    help = (
        "Process the embedding queue without a django-q2 cluster: for operators, tests and "
        "benchmarks. Prints a summary. SIGTERM or Ctrl-C finishes the requests in hand, gives the rest "
        "of the batches back and stops."
    )

    def add_arguments(self, parser):
        parser.add_argument("--until-empty", action="store_true", help="stop when nothing is left to claim")
        parser.add_argument("--max-batches", type=int, help="stop after this many batches (per worker)")
        parser.add_argument("--seconds", type=float, help="stop after this many seconds")
        parser.add_argument("--workers", type=int, default=1, help="worker processes to run (default 1)")

    def handle(self, *args, **options):
        if options["workers"] < 1:
            raise CommandError("--workers must be at least 1.")
        if not (options["until_empty"] or options["max_batches"] or options["seconds"]):
            self.stderr.write("Running until stopped (Ctrl-C); --until-empty stops when the queue is empty.")
        started = time.monotonic()
        if options["workers"] == 1:
            reports = [asdict(_run_worker(options, None))]
        else:
            reports = self._run_processes(options)
        total = BatchReport(**{f.name: sum(r[f.name] for r in reports) for f in fields(BatchReport)})
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"{total.completed} completed ({total.skipped} already current), {total.failed} failed, "
            f"{total.retried} to retry, {total.rate_limited} rate-limited, {total.requeued} re-queued after edits; "
            f"{total.texts_embedded} texts ({total.tokens} tokens) embedded by {options['workers']} worker(s) "
            f"in {elapsed:.1f} s ({total.completed / elapsed if elapsed else 0:.1f} documents/s)."
        )

    def _run_processes(self, options) -> list[dict]:
        # Children are forked: close our connections first so none is shared across processes.
        connections.close_all()
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        children = [
            context.Process(target=_run_worker, args=(options, results), name=f"process_queue-{n}")
            for n in range(options["workers"])
        ]
        for child in children:
            child.start()
        forward = lambda signum, _frame: [c.terminate() for c in children if c.is_alive()]  # noqa: E731
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for child in children:
                child.join()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        failed = [c.name for c in children if c.exitcode != 0]
        if failed:
            raise CommandError(f"worker processes exited with errors: {', '.join(failed)}")
        # Reports are a few numbers each: they fit the pipe, so children never block on put().
        return [results.get(timeout=5) for _ in children]
