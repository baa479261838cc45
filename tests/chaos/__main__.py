"""python -m tests.chaos [suite ...] [--quick]: the chaos and fault suites at full size, with a report.

Steps: check the arguments; start a PostgreSQL of the run's own (`.data/chaos-postgres`, port
54379; CHAOS_DB_DIR and CHAOS_DB_PORT override) and migrate it; for each suite empty the tables,
run it, print its summary; write JSON and Markdown under tests/chaos/results/ (git-ignored);
stop the server. Exits 1 when any suite lost something or failed to finish.
"""

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from tests.helpers import ROOT

SUITES = ("kill", "storm", "shutdown")


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", metavar="suite", help=f"default: all of {', '.join(SUITES)}")
    parser.add_argument("--quick", action="store_true", help="the short sizes `make test` runs")
    parser.add_argument("--output", type=Path, default=ROOT / "tests" / "chaos" / "results")
    args = parser.parse_args(argv)
    unknown = [name for name in args.suites if name not in SUITES]
    if unknown:
        parser.error(f"unknown suite {', '.join(map(repr, unknown))}; choose from {', '.join(SUITES)}")
    args.suites = list(dict.fromkeys(args.suites)) or list(SUITES)
    return args


def start_database() -> Path:
    data_dir = Path(os.environ.get("CHAOS_DB_DIR", ROOT / ".data" / "chaos-postgres")).resolve()
    os.environ.pop("DATABASE_URL", None)
    os.environ.update(
        DEBUG="1",
        DJANGO_SETTINGS_MODULE="embedding_site.settings",
        EMBEDDED_DB_DIR=str(data_dir),
        EMBEDDED_DB_PORT=os.environ.get("CHAOS_DB_PORT", "54379"),
    )
    import django
    from django.core.management import call_command

    from embedding_site import embedded_pg

    embedded_pg.ensure_running(data_dir, int(os.environ["EMBEDDED_DB_PORT"]))
    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    return data_dir


def main(argv=None) -> int:
    args = parse_arguments(argv)
    sys.path.insert(0, str(ROOT))
    data_dir = start_database()
    from django.db import connections

    from embedding_site import embedded_pg
    from tests.chaos import kill, report, rig, shutdown, storm

    modules = {"kill": kill, "storm": storm, "shutdown": shutdown}
    env = report.environment()
    print(f"chaos suites on {env['cores']} cores, load average {env['load_average_at_start']}", flush=True)
    results, failed = {}, False
    try:
        for name in args.suites:
            module = modules[name]
            print(f"running {name}{' (quick)' if args.quick else ''} …", flush=True)
            rig.reset_database()
            started = time.monotonic()
            try:
                result = module.run(module.SHORT if args.quick else module.LONG, args.output / "logs" / name)
            except Exception:
                traceback.print_exc()
                result = {"error": traceback.format_exc(), "seconds": round(time.monotonic() - started, 1)}
            results[name] = result
            failed |= bool(result.get("error") or result.get("problems"))
            if "error" not in result:
                for measure, value in report.summary(name, result):
                    print(f"  {measure}: {value}")
    finally:
        connections.close_all()
        embedded_pg.stop(data_dir)
    json_path, md_path = report.write(args.output, env, {"suites": args.suites, "quick": args.quick},
                                      {k: v for k, v in results.items() if "error" not in v})  # fmt: skip
    print(f"reports: {json_path} and {md_path}; worker logs under {args.output / 'logs'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
