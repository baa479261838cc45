"""Separate hosts on one machine for tests: Linux network namespaces joined by veth pairs.

Each host gets its own network stack (its own loopback, its own address 10.231.N.2, a route
to this machine at 10.231.N.1) and its own host name (a UTS namespace), so what runs there
reaches the database and the embedding service only over a network link, as a worker on
another machine would. Needs root and iproute2; `unavailable()` says why not otherwise.

`Forwarder` relays TCP from the hosts' side of the links to a service listening only on this
machine's loopback (the embedded PostgreSQL binds 127.0.0.1 by design).
"""

import asyncio
import contextlib
import os
import shutil
import subprocess
import threading
import uuid
from dataclasses import dataclass


def unavailable() -> str | None:
    """None when namespaces can be made here, else the reason."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "network namespaces need iproute2 (ip) and util-linux (unshare)"
    probe = f"scprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass(frozen=True)
class Host:
    name: str  # the namespace, and the host name processes there see
    address: str  # its own address
    gateway: str  # this machine's address on the link

    def command(self, *argv: str) -> list[str]:
        """argv, run in this host's network namespace under its own host name."""
        return ["ip", "netns", "exec", self.name, "unshare", "--uts", "sh", "-c",
                f'hostname {self.name} && exec "$0" "$@"', *argv]  # fmt: skip


@contextlib.contextmanager
def hosts(count: int):
    """`count` Hosts, each a namespace linked to this machine by its own veth pair; all
    removed afterwards (deleting a namespace deletes its end of the link, and so the pair)."""
    tag = uuid.uuid4().hex[:4]
    made: list[Host] = []
    try:
        for n in range(1, count + 1):
            host = Host(f"sc{tag}n{n}", f"10.231.{n}.2", f"10.231.{n}.1")
            outside, inside = f"sc{tag}o{n}", f"sc{tag}i{n}"
            _ip("netns", "add", host.name)
            made.append(host)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", host.name)
            _ip("addr", "add", f"{host.gateway}/30", "dev", outside)
            _ip("link", "set", outside, "up")
            for args in (
                ("addr", "add", f"{host.address}/30", "dev", inside),
                ("link", "set", inside, "up"),
                ("link", "set", "lo", "up"),
                ("route", "add", "default", "via", host.gateway),
            ):
                _ip("-n", host.name, *args)
        yield made
    finally:
        for host in made:
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True)


class Forwarder:
    """Relays TCP connections from (listen addresses, port) to a target address, in a thread."""

    def __init__(self, listen_hosts: list[str], target: tuple[str, int], port: int = 0):
        self.listen_hosts, self.target, self.port = listen_hosts, target, port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-forwarder", daemon=True)

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self):
        asyncio.set_event_loop(self._loop)
        servers = []
        for host in self.listen_hosts:
            server = self._loop.run_until_complete(asyncio.start_server(self._relay, host, self.port))
            self.port = server.sockets[0].getsockname()[1]  # the first picks a free port; all share it
            servers.append(server)
        self._ready.set()
        self._loop.run_forever()
        for server in servers:
            server.close()

    async def _relay(self, client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
