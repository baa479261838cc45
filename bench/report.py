"""The machine, the versions, the table, and the JSON and Markdown files a run leaves behind."""

import dataclasses
import json
import os
import platform
import subprocess
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict:
    """Machine and versions; needs a database connection (PostgreSQL and pgvector versions)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
        cursor.execute("SHOW shared_buffers")
        shared_buffers = cursor.fetchone()[0]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip()  # fmt: skip
    except OSError:
        commit = ""
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "postgresql": postgres,
        "pgvector": row[0] if row else "not installed",
        "shared_buffers": shared_buffers,
        "onnxruntime": _version("onnxruntime"),
        "django": _version("Django"),
        "psycopg": _version("psycopg"),
        "git_commit": commit,
    }


def _format(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def table_lines(results) -> list[str]:
    header = ("scenario", "measure", "value", "unit", "target", "met")
    rows = [
        (
            result.name,
            row.measure,
            _format(row.value),
            row.unit,
            row.target,
            "" if row.met is None else ("yes" if row.met else "NO"),
        )  # fmt: skip
        for result in results
        for row in result.rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return lines


def markdown(env: dict, arguments: dict, results) -> str:
    lines = [
        f"# Sidecar benchmark, {env['date']}",
        "",
        f"Machine: {env['cores']} cores ({env['cores_available']} available), {env['cpu_model']}; "
        f"load average at start {env['load_average_at_start']}. Shared and noisy: compare ratios taken in one run.",
        f"Versions: Python {env['python']}, PostgreSQL {env['postgresql']}, pgvector {env['pgvector']}, "
        f"onnxruntime {env['onnxruntime']}, Django {env['django']}, psycopg {env['psycopg']}; commit {env['git_commit']}.",
        f"Command arguments: {arguments}",
        "",
    ]
    for result in results:
        lines += [
            f"## {result.name}",
            "",
            f"Corpus: {result.corpus}.",
            f"Parameters: {result.parameters}.",
            "",
        ]
        lines += ["| measure | value | unit | target | met |", "|---|---|---|---|---|"]
        for row in result.rows:
            met = "" if row.met is None else ("yes" if row.met else "**no**")
            lines.append(f"| {row.measure} | {_format(row.value)} | {row.unit} | {row.target} | {met} |")
        top = result.metrics.get("profile_top10_tottime")
        if top:
            lines += ["", "Top 10 functions by own time (cProfile, one worker):", ""]
            lines += ["| function | group | calls | tottime s | cumtime s |", "|---|---|---|---|---|"]
            lines += [
                f"| `{r['function']}` | {r['group']} | {r['calls']} | {r['tottime_s']} | {r['cumtime_s']} |"
                for r in top
            ]
        lines += [""] + [f"- {note}" for note in result.notes] + [""]
    return "\n".join(lines)


def write(output_dir: Path, env: dict, arguments: dict, results, seconds: float) -> tuple[Path, Path]:
    """bench-<timestamp>.json/.md, plus latest.json/.md; returns the two timestamped paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data = {
        "environment": env,
        "arguments": arguments,
        "seconds": round(seconds, 1),
        "scenarios": {r.name: dataclasses.asdict(r) for r in results},
    }
    json_path = output_dir / f"bench-{stamp}.json"
    md_path = output_dir / f"bench-{stamp}.md"
    text = json.dumps(data, indent=2, default=str)
    report = markdown(env, arguments, results)
    for path, content in (
        (json_path, text),
        (output_dir / "latest.json", text),
        (md_path, report),
        (output_dir / "latest.md", report),
    ):
        path.write_text(content)
    return json_path, md_path
