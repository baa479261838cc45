"""One worker process for the `machinery` scenario: a QueueWorker with the zero-cost embedder.

    python -m bench.machinery_worker

Reads its database from the environment the bench runner set. Prints `ready` once Django is
set up and connected, waits for a line on stdin (so the parent starts every process's clock
at once), runs until the queue is empty and prints `done <completed>`.
"""

import os
import sys

import django


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "embedding_site.settings")
    django.setup()
    from django.db import connection

    from bench.zero_cost import ZeroCostEmbedderForBenchmarks
    from queue_admin.worker import QueueWorker

    connection.ensure_connection()
    print("ready", flush=True)
    sys.stdin.readline()
    with QueueWorker(ZeroCostEmbedderForBenchmarks(), name="bench-machinery") as worker:
        report = worker.run(until_empty=True)
    print(f"done {report.completed}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
