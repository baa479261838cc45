"""A worker in its own OS process, with the fake embedder, for the concurrency tests.

    python -m tests.worker_process --log FILE [--slow SECONDS] [--until-empty | --seconds N]

DATABASE_URL must name the test database. Every text sent to the (fake) model is appended to
FILE before the call returns, so the parent can count provider inputs across processes,
including those of a worker it kills.
"""

import argparse
import os
import sys
import time

import django


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--slow", type=float, default=0.0, help="seconds each embed call takes")
    parser.add_argument("--until-empty", action="store_true")
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "embedding_site.settings")
    django.setup()
    from queue_admin.worker import QueueWorker
    from tests.fakes import FakeEmbedderForQueueTests

    class LoggingFakeEmbedder(FakeEmbedderForQueueTests):
        def embed(self, texts, may_retry=None):
            with open(args.log, "a") as log:
                log.writelines(f"{text}\n" for text in texts)
                log.flush()
                os.fsync(log.fileno())
            time.sleep(args.slow)
            return super().embed(texts)

    with QueueWorker(LoggingFakeEmbedder(), name="testproc") as worker:
        print(f"started {worker.worker_id}", flush=True)
        deadline = time.monotonic() + args.seconds if args.seconds else None
        report = worker.run(until_empty=args.until_empty, deadline=deadline)
    print(f"done {report.completed}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
