"""python -m bench [scenario ...] [--quick] [--size N]: run benchmarks against a database of their own.

Steps: check the arguments (exit 2 with a message if they are wrong); point Django at the
bench's own embedded PostgreSQL (`.data/bench-postgres`, port 54369; BENCH_DB_DIR and
BENCH_DB_PORT override) or at --database-url; start it, connect and migrate (exit 1 with a
message if the database cannot be reached); run each scenario; print the table; write JSON and
Markdown under bench/results/; stop the embedded server.
"""

import argparse
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = (
    "pipeline", "machinery", "http", "latency", "backfill", "search", "memory", "dashboard", "sources",
    "files", "quality", "index",
)  # fmt: skip
# Run only when named: `peer` installs pgai into a virtual environment of its own on its first
# run, with network access, which `make bench` must not need.
ON_REQUEST = ("peer",)
DEFAULT_DB_DIR = ROOT / ".data" / "bench-postgres"
DEFAULT_DB_PORT = 54369
# The bench's own server holds its working set in memory, as a production server is sized to:
# the search scenario's HNSW index alone is 195 MiB, and the embedded server's development
# default (128MB) would time reads from the OS cache instead of the index (BENCH_SHARED_BUFFERS
# overrides; the reports state it).
DEFAULT_SHARED_BUFFERS = "1GB"


def parse_arguments(argv):
    from bench.corpus import CORPORA, DEFAULT_WORDS_PER_DOC

    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Sidecar benchmarks. They measure; they are not tests. Scenarios: "
        + ", ".join(SCENARIOS)
        + "; when named: "
        + ", ".join(ON_REQUEST),
    )
    parser.add_argument(
        "scenarios", nargs="*", metavar="scenario", help=f"default: all but {', '.join(ON_REQUEST)}"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks that the code runs, measures little"
    )
    parser.add_argument("--size", type=int, help="documents per scenario (overrides each scenario's default)")
    parser.add_argument(
        "--corpus", default="synthetic", help=f"one of {', '.join(CORPORA)} (default synthetic)"
    )
    parser.add_argument(
        "--words", type=int, default=DEFAULT_WORDS_PER_DOC, help="words per synthetic document"
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where the pipeline scenario runs the local model: cuda needs onnxruntime-gpu and an NVIDIA GPU",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results", help="where reports go")
    parser.add_argument(
        "--database-url",
        help="use this PostgreSQL (with pgvector) instead of the embedded one; its name must contain "
        "'bench', because the benchmark empties its tables",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios if name not in SCENARIOS + ON_REQUEST]
    if unknown:
        parser.error(
            f"unknown scenario {', '.join(map(repr, unknown))}; choose from {', '.join(SCENARIOS + ON_REQUEST)}"
        )
    if args.size is not None and args.size < 1:
        parser.error(f"--size must be at least 1, got {args.size}")
    if args.words < 1:
        parser.error(f"--words must be at least 1, got {args.words}")
    if args.corpus not in CORPORA:
        parser.error(f"unknown corpus {args.corpus!r}; choose from {', '.join(CORPORA)}")
    if args.database_url and "bench" not in args.database_url.rsplit("/", 1)[-1]:
        parser.error(
            "--database-url must name a database whose name contains 'bench': the benchmark empties its tables"
        )
    if args.device == "cuda" and (missing := cuda_missing()):
        parser.error(missing)
    args.scenarios = list(dict.fromkeys(args.scenarios)) or list(SCENARIOS)
    return args


def cuda_missing() -> str | None:
    """Why --device cuda cannot run here, or None when onnxruntime offers its CUDA provider."""
    try:
        import onnxruntime
    except ImportError as exc:
        return f"--device cuda: onnxruntime cannot be imported ({exc})"
    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return None
    return (
        "--device cuda needs onnxruntime's CUDAExecutionProvider, and this onnxruntime offers only "
        f"{', '.join(available)}: install onnxruntime-gpu (in place of onnxruntime) on a machine with "
        "an NVIDIA GPU and CUDA"
    )


def configure_database(args) -> tuple[Path | None, str]:
    """Set the environment Django's settings read; returns (embedded data dir or None, description)."""
    os.environ["DEBUG"] = "1"
    os.environ["DJANGO_SETTINGS_MODULE"] = "embedding_site.settings"
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
        return None, "the database at --database-url"
    os.environ.pop("DATABASE_URL", None)
    data_dir = Path(os.environ.get("BENCH_DB_DIR", DEFAULT_DB_DIR)).resolve()
    port = os.environ.get("BENCH_DB_PORT", str(DEFAULT_DB_PORT))
    os.environ["EMBEDDED_DB_DIR"] = str(data_dir)
    os.environ["EMBEDDED_DB_PORT"] = port
    return data_dir, f"the bench's embedded PostgreSQL ({data_dir}, port {port})"


def connect_and_migrate(data_dir: Path | None, description: str) -> str | None:
    """Start (if embedded), connect, migrate; an error message, or None when ready."""
    import django
    from django.core.management import call_command
    from django.db import OperationalError, connection

    from embedding_site import embedded_pg

    try:
        if data_dir is not None:
            embedded_pg.ensure_running(data_dir, int(os.environ["EMBEDDED_DB_PORT"]))
            size_shared_buffers(data_dir, int(os.environ["EMBEDDED_DB_PORT"]))
        django.setup()
        # The worker logs every batch: thousands of lines that would bury the table.
        for name in ("sidecar", "django-q"):
            logging.getLogger(name).setLevel(logging.WARNING)
        connection.ensure_connection()
        call_command("migrate", verbosity=0, interactive=False)
    except embedded_pg.EmbeddedDBError as exc:
        return f"cannot start {description}: {exc}"
    except OperationalError as exc:
        return f"cannot reach {description}: {str(exc).strip()}"
    return None


def size_shared_buffers(data_dir: Path, port: int) -> None:
    """Give the bench's embedded server BENCH_SHARED_BUFFERS (a restart, once per data dir)."""
    import psycopg

    from embedding_site import embedded_pg

    wanted = os.environ.get("BENCH_SHARED_BUFFERS", DEFAULT_SHARED_BUFFERS)
    with psycopg.connect(embedded_pg.url(port, embedded_pg.DATABASE), autocommit=True) as conn:
        if conn.execute("SHOW shared_buffers").fetchone()[0] == wanted:
            return
        conn.execute(
            psycopg.sql.SQL("ALTER SYSTEM SET shared_buffers = {}").format(psycopg.sql.Literal(wanted))
        )
    embedded_pg.stop(data_dir)
    embedded_pg.ensure_running(data_dir, port)


def main(argv=None) -> int:
    args = parse_arguments(argv)
    sys.path.insert(0, str(ROOT))
    data_dir, description = configure_database(args)
    from django.core.exceptions import ImproperlyConfigured

    try:
        error = connect_and_migrate(data_dir, description)
    except ImproperlyConfigured as exc:
        error = f"bad database settings: {exc}"
    if error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    try:
        return run_scenarios(args)
    finally:
        if data_dir is not None:
            from django.db import connections

            from embedding_site import embedded_pg

            connections.close_all()
            embedded_pg.stop(data_dir)


def run_scenarios(args) -> int:
    from bench import (
        backfill_at_scale,
        dashboard,
        files,
        http_provider,
        index_policy,
        latency,
        machinery,
        memory_over_time,
        peer,
        pipeline,
        report,
        search_at_scale,
        search_quality,
        sources,
    )

    modules = {
        "pipeline": pipeline,
        "machinery": machinery,
        "http": http_provider,
        "latency": latency,
        "backfill": backfill_at_scale,
        "search": search_at_scale,
        "memory": memory_over_time,
        "dashboard": dashboard,
        "sources": sources,
        "files": files,
        "quality": search_quality,
        "index": index_policy,
        "peer": peer,
    }
    env = report.environment()
    print(f"Sidecar benchmarks on {env['cores']} cores ({env['cpu_model']}), PostgreSQL {env['postgresql']}, "
          f"pgvector {env['pgvector']} (shared_buffers {env['shared_buffers']}), onnxruntime {env['onnxruntime']}; load average {env['load_average_at_start']}")  # fmt: skip
    started = time.perf_counter()
    results = []
    for name in args.scenarios:
        print(f"running {name}{' (quick)' if args.quick else ''} …", flush=True)
        scenario_started = time.perf_counter()
        options = {"device": args.device} if name == "pipeline" else {}
        result = modules[name].run(
            size=args.size, quick=args.quick, corpus_name=args.corpus, words_per_doc=args.words, **options
        )
        result.metrics["seconds"] = time.perf_counter() - scenario_started
        results.append(result)
    arguments = {
        "scenarios": args.scenarios,
        "quick": args.quick,
        "size": args.size,
        "corpus": args.corpus,
        "words": args.words,
        "device": args.device,
    }
    print()
    print("\n".join(report.table_lines(results)))
    for result in results:
        for note in result.notes:
            print(f"  {result.name}: {note}")
    json_path, md_path = report.write(args.output, env, arguments, results, time.perf_counter() - started)
    print(f"\nreports: {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
