"""One worker process for the benchmarks: a QueueWorker, started apart from the clock.

    python -m bench.worker_process [--embedder zero-cost|configured]

`zero-cost` (the default) embeds with bench/zero_cost.py; `configured` with the provider the
settings name (EMBEDDING_PROVIDER etc. in the environment the parent gives it). Reads its
database from that environment too. Prints `ready <pid>` once Django is set up and connected,
waits for a line on stdin (so the parent starts every process's clock at once), runs until
the queue is empty, prints `done <completed> <cpu seconds since go>`, and exits when stdin
closes (so the parent can still read its memory after the work).
"""

import argparse
import os
import resource
import sys

import django


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--embedder", choices=("zero-cost", "configured"), default="zero-cost")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "embedding_site.settings")
    django.setup()
    from django.db import connection

    from queue_admin.worker import QueueWorker

    if args.embedder == "zero-cost":
        from bench.zero_cost import ZeroCostEmbedderForBenchmarks

        provider = ZeroCostEmbedderForBenchmarks()
    else:
        from documents.providers.factory import get_provider

        provider = get_provider()
    connection.ensure_connection()
    print(f"ready {os.getpid()}", flush=True)
    sys.stdin.readline()
    started = cpu_seconds()
    with QueueWorker(provider, name="bench-worker") as worker:
        report = worker.run(until_empty=True)
    print(f"done {report.completed} {cpu_seconds() - started:.3f}", flush=True)
    sys.stdin.readline()  # EOF when the parent closes our stdin
    return 0


if __name__ == "__main__":
    sys.exit(main())
