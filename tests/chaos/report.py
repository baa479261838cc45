"""The chaos run's report: JSON with every figure, and a short Markdown summary."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime
from pathlib import Path


def environment() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": commit,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "postgresql": postgres,
    }


def summary(name: str, result: dict) -> list[tuple[str, str]]:
    """(measure, value) lines for one suite's result."""
    lines = [
        ("seconds", f"{result['seconds']}"),
        ("lost (problems at the end)", str(result["problems"] or "nothing")),
    ]
    work = result["provider"]
    lines.append(
        (
            "provider inputs sent ÷ needed",
            f"{work['inputs_sent']} ÷ {work['inputs_needed']} = {work['duplicate_ratio']}",
        )
    )
    if name == "kill":
        lines += [
            (
                "documents / edited / deleted",
                f"{result['plan']['documents']} / {result['edited']} / {result['deleted']}",
            ),
            ("kills (SIGKILL) by kind", f"{result['kills']}: {result['kills_by_kind']}"),
            (
                "duplicate inputs per kill (batch size)",
                f"{result['duplicates_per_kill']} ({result['plan']['batch_size']})",
            ),
            ("items completed by", str(result["completed_by"])),
            ("items taken back after a kill", str(result["items_taken_back_after_a_kill"])),
        ]
    elif name == "storm":
        outage = result["outage"]
        lines += [
            ("faults given", str(result["faults_given"])),
            (
                "items retried / most attempts on one",
                f"{result['items_retried']} / {result['most_attempts_on_one_item']}",
            ),
            (
                "max requests in any 60 s vs quota",
                f"{result['max_requests_in_any_60s']} vs {result['quota_per_minute']}",
            ),
            (
                "outage: seconds, requests, after the breaker opened",
                f"{outage['seconds']}, {outage['requests']}, {outage['requests_after_breaker_opened']} (trials possible {outage['trials_possible']})",
            ),
            (
                "breaker transitions (s, state)",
                " → ".join(f"{t}: {s}" for t, s in result["breaker_transitions"]),
            ),
        ]
    elif name == "shutdown":
        lines += [
            ("stops (SIGTERM)", str(len(result["cycles"]))),
            (
                "longest until nothing processing / until exit",
                f"{result['max_seconds_until_none_processing']} s / {result['max_seconds_until_exit']} s (lease {result['lease_seconds']} s)",
            ),
            ("items taken back by lease expiry", str(result["items_taken_back_by_lease_expiry"])),
        ]
    return lines


def write(folder: Path, env: dict, arguments: dict, results: dict[str, dict]) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    document = {"environment": env, "arguments": arguments, "suites": results}
    markdown = [f"# Chaos run {env['date']} (commit {env['commit']})", "",
                f"{env['cores']} cores, load average at start {env['load_average_at_start']}, "
                f"PostgreSQL {env['postgresql']}, Python {env['python']}; arguments {arguments}.", ""]  # fmt: skip
    for name, result in results.items():
        markdown += [f"## {name}", "", "| measure | value |", "|---|---|"]
        markdown += [f"| {measure} | {value} |" for measure, value in summary(name, result)]
        markdown.append("")
    paths = []
    for base in (f"chaos-{stamp}", "latest"):
        json_path, md_path = folder / f"{base}.json", folder / f"{base}.md"
        json_path.write_text(json.dumps(document, indent=2, default=str) + "\n")
        md_path.write_text("\n".join(markdown))
        paths = [json_path, md_path]
    return paths[0], paths[1]
