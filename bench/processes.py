"""Worker processes for the benchmarks, and where the CPU went while they worked.

`run_workers` starts N `bench.worker_process` children, waits until each is set up and
connected, releases them together and waits for each to report; meanwhile a `sample`
callback may watch them (the `memory` scenario reads their RSS). It returns the wall time,
the documents completed, and CPU seconds by who spent them: the workers (their own
getrusage), PostgreSQL (the postmaster and its backends, from /proc through psutil; only for
the bench's embedded server) and the whole machine (busy cores, other people's load included).

The children run as production would: DEBUG off (with DEBUG on, Django's debug cursor keeps
the last 9,000 statements of every process and formats each one: neither is in production),
logs at WARNING.
"""

import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_SECONDS = 3600


def production_environment(**overrides: str) -> dict[str, str]:
    """The environment for a child process: this database, DEBUG off, quiet logs."""
    from embedding_site import embedded_pg

    env = dict(os.environ)
    if not env.get("DATABASE_URL"):  # the bench's embedded server, named as production names one
        env["DATABASE_URL"] = embedded_pg.url(int(env["EMBEDDED_DB_PORT"]), embedded_pg.DATABASE)
    env.update(
        DEBUG="0",
        SECRET_KEY="bench-only-not-a-secret-" + "x" * 40,
        ALLOWED_HOSTS="localhost",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="embedding_site.settings",
    )
    env.update(overrides)
    return env


def postgres_cpu_seconds() -> float | None:
    """CPU seconds the bench's embedded PostgreSQL has used so far: the postmaster, its live
    backends, and the backends it has reaped (children_* times). None for --database-url."""
    if os.environ.get("DATABASE_URL") or not os.environ.get("EMBEDDED_DB_DIR"):
        return None
    try:
        pid = int((Path(os.environ["EMBEDDED_DB_DIR"]) / "postmaster.pid").read_text().split()[0])
        postmaster = psutil.Process(pid)
        times = postmaster.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in postmaster.children():
            try:
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
            except psutil.NoSuchProcess:
                pass  # exited between the listing and the read: its time is in children_* next time
        return total
    except (OSError, ValueError, psutil.Error):
        return None


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every core, everyone's processes)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


@dataclass
class CpuWatch:
    """CPU use between `start()` and `stop()`: PostgreSQL's and the machine's, in core-seconds."""

    seconds: float = 0.0
    postgres_s: float | None = None
    machine_busy_s: float = 0.0
    _started: tuple = field(default=(), repr=False)

    def start(self) -> "CpuWatch":
        self._started = (time.perf_counter(), postgres_cpu_seconds(), machine_busy_seconds())
        return self

    def stop(self) -> "CpuWatch":
        wall, postgres, machine = self._started
        self.seconds = time.perf_counter() - wall
        postgres_now = postgres_cpu_seconds()
        self.postgres_s = None if postgres is None or postgres_now is None else postgres_now - postgres
        self.machine_busy_s = machine_busy_seconds() - machine
        return self


@dataclass
class WorkersRun:
    seconds: float
    completed: int
    worker_cpu_s: float
    cpu: CpuWatch

    def cores(self, cpu_seconds: float | None) -> float | None:
        """CPU seconds as cores kept busy over the run."""
        return None if cpu_seconds is None or not self.seconds else cpu_seconds / self.seconds


def run_workers(
    count: int,
    *,
    embedder: str = "zero-cost",
    env: dict[str, str] | None = None,
    sample: Callable[[list[int], float], None] | None = None,
    sample_every: float = 0.25,
    command: list[str] | None = None,
) -> WorkersRun:
    """Start `count` workers, release them together, wait until each is done.

    `command` runs another program that speaks the same lines as bench.worker_process
    (`ready <pid>`, then `done <completed> <cpu seconds>`): the `peer` scenario's pgai worker.

    `sample(pids, seconds since go)` is called once just before they are released (0.0),
    about every `sample_every` seconds while they work, and once more after the last is done
    (the processes still alive).
    """
    children = [
        subprocess.Popen(
            command or [sys.executable, "-m", "bench.worker_process", "--embedder", embedder],
            cwd=ROOT,
            env=env or production_environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(count)
    ]
    try:
        pids = [int(_expect(child, "ready")[0]) for child in children]
        if sample:
            sample(pids, 0.0)
        cpu = CpuWatch().start()
        started = time.perf_counter()
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        completed, worker_cpu = 0, 0.0
        with selectors.DefaultSelector() as selector:
            for child in children:
                selector.register(child.stdout, selectors.EVENT_READ, child)
            while selector.get_map():
                for key, _ in selector.select(timeout=sample_every):
                    done, cpu_seconds = _expect(key.data, "done")
                    completed += int(done)
                    worker_cpu += float(cpu_seconds)
                    selector.unregister(key.fileobj)
                if sample:
                    sample(pids, time.perf_counter() - started)
                if time.perf_counter() - started > RUN_TIMEOUT_SECONDS:
                    raise RuntimeError(f"worker processes still busy after {RUN_TIMEOUT_SECONDS} s")
        elapsed = time.perf_counter() - started
        cpu.stop()
        if sample:
            sample(pids, elapsed)
    finally:
        for child in children:
            if child.stdin and not child.stdin.closed:
                child.stdin.close()  # lets a finished worker exit
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    failed = [child.returncode for child in children if child.returncode != 0]
    if failed:
        raise RuntimeError(f"worker process(es) exited with status {failed}")
    return WorkersRun(elapsed, completed, worker_cpu, cpu)


def _expect(child: subprocess.Popen, word: str) -> list[str]:
    """The words after `word` on the child's next line; RuntimeError if it says anything else."""
    line = child.stdout.readline().strip()
    if not line.startswith(word + " "):
        child.poll()
        raise RuntimeError(
            f"a worker process said {line!r} instead of {word!r}"
            + (f" and exited with status {child.returncode}" if child.returncode is not None else "")
        )
    return line.split()[1:]


@dataclass
class CommandRun:
    seconds: float
    peak_rss_bytes: int  # the command's own high-water mark (VmHWM), read while it runs
    returncode: int
    output: str


def run_command(
    args: list[str],
    env: dict[str, str] | None = None,
    every: float = 0.05,
    sample: Callable[[int, float], None] | None = None,
) -> CommandRun:
    """Run `python <args>` in the repository to the end; its wall time, peak RSS and output.

    The peak is /proc's VmHWM of the running program, read every `every` seconds (the last
    read before it exits): not wait4's ru_maxrss, which also counts the parent's memory at
    fork time, so every child of a big benchmark process would seem as big as it.
    `sample(pid, seconds since start)` is called at each of those reads.
    """
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env or production_environment(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    peak = 0
    while True:
        peak = max(peak, _high_water_mark(child.pid))
        if sample:
            sample(child.pid, time.perf_counter() - started)
        try:
            output, _ = child.communicate(timeout=every)
            break
        except subprocess.TimeoutExpired:
            continue
    return CommandRun(time.perf_counter() - started, peak, child.returncode, output)


def _high_water_mark(pid: int) -> int:
    """Peak RSS so far of a running process, in bytes (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:  # not Linux: the current RSS, sampled, is the best there is
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0
