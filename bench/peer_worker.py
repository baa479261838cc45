"""The peer's worker for the `peer` scenario: pgai's vectorizer worker, run from its own
virtual environment (.data/peer-venv), started apart from the clock as bench.worker_process is.

    .data/peer-venv/bin/python -m bench.peer_worker --db-url URL [--concurrency N]

It runs in the peer's environment, not Sidecar's, so it imports only the standard library
and what pgai brings. Prints `ready <pid>` once pgai's worker code is imported and the database
answers; waits for a line on stdin (so the parent starts the clock); runs pgai's `Worker` once,
as `pgai vectorizer worker --once [--concurrency N]` does (every vectorizer until its queue is
empty); prints `done 0 <cpu seconds since go>` (pgai's Worker returns no count: the scenario
counts the destination table), or `failed <error>` and exits 1; exits when stdin closes.
"""

import argparse
import asyncio
import datetime
import logging
import os
import resource
import sys


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peer_worker")
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--concurrency", type=int, help="default: the vectorizer's own setting")
    args = parser.parse_args()

    import openai  # noqa: F401  pgai imports it at its first request: imported before the clock, as Sidecar's provider is
    import psycopg
    import structlog

    # pgai logs through structlog, which prints to stdout by default: stdout carries our
    # ready/done lines, so its log goes to stderr, errors only (it warns once per batch loop
    # that the bench's model name has no tiktoken tokenizer, which is expected here).
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    from pgai.vectorizer import Worker

    with psycopg.connect(args.db_url) as conn:
        conn.execute("SELECT 1")
    print(f"ready {os.getpid()}", flush=True)
    sys.stdin.readline()
    started = cpu_seconds()
    worker = Worker(args.db_url, datetime.timedelta(seconds=1), once=True, concurrency=args.concurrency)
    error = asyncio.run(worker.run())
    if error is not None:
        print(f"failed {error}", flush=True)
        return 1
    print(f"done 0 {cpu_seconds() - started:.3f}", flush=True)
    sys.stdin.readline()  # EOF when the parent closes our stdin
    return 0


if __name__ == "__main__":
    sys.exit(main())
