"""A fake embedding service on 127.0.0.1 that fails on cue.

It is not a model: vectors are derived from a hash of each text (deterministic, unit length),
so tests of the HTTP client, the queue and the workers can check exactly what was stored. It
serves the OpenAI-compatible ``POST /v1/embeddings`` and TEI's ``POST /embed``.

Faults are a script: each request takes the next :class:`Fault` from the queue and, once the
queue is empty, is answered normally. Every request is counted, so a test can say "retried 3
times" or "not retried".

In a test, use the ``fake_embedder`` fixture (tests/conftest.py). For other processes (worker
tests), start it standalone and program it over HTTP::

    python -m tests.fault_server --port 8765 --dimensions 384 --script '[{"status": 503}]'
    curl -X POST localhost:8765/_control/script -d '[{"status": 429, "headers": {"Retry-After": "7"}}]'
    curl localhost:8765/_control/requests      # {"count": 2, "paths": {"/v1/embeddings": 2}}
    curl -X POST localhost:8765/_control/reset  # forget faults and counts
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

OPENAI_PATH = "/v1/embeddings"
TEI_PATH = "/embed"
CONTROL_PREFIX = "/_control/"


@dataclass
class Fault:
    """What to do to one request instead of (or on top of) a normal answer."""

    status: int | None = None  # answer with this status (an error JSON body unless `body` is set)
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers (Retry-After)
    body: str | None = None  # send this body as-is, with `content_type`
    content_type: str = "application/json"
    sleep: float = 0.0  # seconds to wait before answering (read timeouts)
    trickle_interval: float = 0.0  # send the normal answer one byte per interval (slow loris)
    huge_bytes: int = 0  # stream this many bytes of "[" with status 200, never built in memory
    declare_length: bool = False  # with huge_bytes: announce it in Content-Length
    dimensions: int | None = None  # vectors of this size instead of the server's
    nan: bool = False  # write a literal NaN into the first vector
    drop_vectors: int = 0  # answer with this many vectors fewer
    reverse: bool = False  # OpenAI: list data in reverse order (each item keeps its true index)
    no_usage: bool = False  # OpenAI: leave out `usage`
    echo_authorization: bool = False  # put the request's Authorization header into the body
    close_connection: bool = False  # close the connection without answering


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    json: object
    at: float = field(default_factory=time.monotonic)  # when it arrived (time.monotonic)

    @property
    def inputs(self) -> list:
        """The texts it asked to embed (OpenAI's `input`, TEI's `inputs`)."""
        if not isinstance(self.json, dict):
            return []
        texts = self.json.get("input", self.json.get("inputs")) or []
        return [texts] if isinstance(texts, str) else list(texts)


def _asks_base64(payload: object) -> bool:
    return isinstance(payload, dict) and payload.get("encoding_format") == "base64"


def fake_vector(text: str, dimensions: int) -> np.ndarray:
    """The unit-length float32 vector the fake gives ``text``: same text, same vector."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    vector = np.random.default_rng(seed).standard_normal(dimensions)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class FakeEmbedder:
    """The server, its fault queue and its request log. Use as a context manager."""

    def __init__(
        self,
        port: int = 0,
        dimensions: int = 8,
        *,
        host: str = "127.0.0.1",
        latency: float = 0.0,
        base64: str = "answer",
    ):
        """`latency`: seconds every answer waits (a remote model's think time); `host`: where to
        listen (another address than loopback lets network namespaces reach it); `base64`, what
        the OpenAI endpoint does with `encoding_format: "base64"`: "answer" (as OpenAI does),
        "ignore" (answers floats anyway, as some compatible servers do) or "reject" (a 400)."""
        if base64 not in ("answer", "ignore", "reject"):
            raise ValueError(f"base64 must be answer, ignore or reject, not {base64!r}")
        self.dimensions = dimensions
        self.latency = latency
        self.base64 = base64
        self.requests: list[ReceivedRequest] = []
        # Once the script is used up, each request asks this for its fault (None: answer
        # normally). The chaos suites (tests/chaos/) draw faults at random and stage outages.
        self.policy: Callable[[ReceivedRequest], Fault | None] | None = None
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    def script(self, *faults: Fault) -> None:
        """Queue faults: the next len(faults) requests get them, in order."""
        with self._lock:
            self._faults.extend(faults)

    def count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    def start(self) -> FakeEmbedder:
        # A short poll interval: shutdown() waits for the loop to notice, once per test.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-embedder",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers that sleep or trickle
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeEmbedder:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def snapshot(self) -> list[ReceivedRequest]:
        """A copy of the request log, safe to read while requests keep arriving."""
        with self._lock:
            return list(self.requests)

    def _take(self, request: ReceivedRequest) -> Fault:
        with self._lock:
            self.requests.append(request)
            if self._faults:
                return self._faults.pop(0)
            policy = self.policy
        return (policy(request) if policy else None) or Fault()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client killed or timed out mid-request (the chaos suites do both on purpose) is not
        # the server's error: no traceback on stderr for it.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pool is exercised
    disable_nagle_algorithm = True  # headers and body go out as separate writes; no 40 ms stall

    def log_message(self, format, *args):  # quiet: pytest shows failures, not every request
        pass

    @property
    def fake(self) -> FakeEmbedder:
        return self.server.fake  # type: ignore[attr-defined]

    def do_GET(self):
        if self.path == CONTROL_PREFIX + "requests":
            with self.fake._lock:
                paths = Counter(r.path for r in self.fake.requests)
            return self._send(200, json.dumps({"count": sum(paths.values()), "paths": paths}).encode())
        self._send(404, b'{"error": "not found"}')

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith(CONTROL_PREFIX):
            return self._control(raw)
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        fault = self.fake._take(ReceivedRequest(self.path, dict(self.headers), payload))
        try:
            self._answer(fault, payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout, size cap): that is what the test wanted

    def _control(self, raw: bytes) -> None:
        if self.path == CONTROL_PREFIX + "script":
            self.fake.script(*(Fault(**spec) for spec in json.loads(raw or b"[]")))
        elif self.path == CONTROL_PREFIX + "reset":
            self.fake.reset()
        else:
            return self._send(404, b'{"error": "unknown control"}')
        self._send(200, b"{}")

    def _answer(self, fault: Fault, payload: object) -> None:
        if fault.close_connection:
            self.close_connection = True
            return
        if fault.sleep and self.fake._stopping.wait(fault.sleep):
            return
        if self.fake.latency and self.fake._stopping.wait(self.fake.latency):
            return
        if fault.huge_bytes:
            return self._send_huge(fault)
        if fault.status is not None and not 200 <= fault.status < 300:
            body = fault.body if fault.body is not None else self._error_body(fault)
            return self._send(fault.status, body.encode(), fault.content_type, fault.headers)
        if fault.body is not None:
            return self._send(fault.status or 200, fault.body.encode(), fault.content_type, fault.headers)
        if self.path == OPENAI_PATH and self.fake.base64 == "reject" and _asks_base64(payload):
            message = "Invalid value for 'encoding_format': 'base64' is not supported by this server"
            return self._send(
                400, json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
            )
        answer = self._embeddings(fault, payload)
        if answer is None:
            return self._send(404, b'{"error": "no such endpoint"}')
        body = json.dumps(answer).encode()  # allow_nan: a NaN goes out as the literal NaN
        if fault.trickle_interval:
            return self._trickle(body, fault.trickle_interval)
        self._send(fault.status or 200, body, headers=fault.headers)

    def _error_body(self, fault: Fault) -> str:
        message = f"fake embedder fault: HTTP {fault.status}"
        if fault.echo_authorization:
            message += f"; you sent {self.headers.get('Authorization')}"
        return json.dumps({"error": {"message": message, "type": "fake_fault"}})

    def _embeddings(self, fault: Fault, payload: object) -> object:
        if not isinstance(payload, dict):
            return None
        if self.path == OPENAI_PATH:
            texts = payload.get("input") or []
            dimensions = fault.dimensions or payload.get("dimensions") or self.fake.dimensions
        elif self.path == TEI_PATH:
            texts = payload.get("inputs") or []
            dimensions = fault.dimensions or self.fake.dimensions
        else:
            return None
        vectors = [fake_vector(text, dimensions).tolist() for text in texts]
        if fault.nan and vectors:
            vectors[0][0] = float("nan")
        if fault.drop_vectors:
            vectors = vectors[: len(vectors) - fault.drop_vectors]
        if self.path == TEI_PATH:
            return vectors
        if _asks_base64(payload) and self.fake.base64 == "answer":
            # As OpenAI sends them: the little-endian float32 bytes, base64-encoded.
            vectors = [base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode() for v in vectors]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        if fault.reverse:
            data.reverse()
        answer = {"object": "list", "data": data, "model": payload.get("model")}
        if not fault.no_usage:
            tokens = sum(len(text.split()) + 1 for text in texts)  # a fake count, not the estimate
            answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return answer

    def _send(self, status, body: bytes, content_type="application/json", headers=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _trickle(self, body: bytes, interval: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i in range(len(body)):
            self.wfile.write(body[i : i + 1])
            self.wfile.flush()
            if self.fake._stopping.wait(interval):
                break
        self.close_connection = True

    def _send_huge(self, fault: Fault) -> None:
        """200 and ``huge_bytes`` of "[": never built in memory, written 1 MiB at a time."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if fault.declare_length:
            self.send_header("Content-Length", str(fault.huge_bytes))
        else:  # no length: the body ends when the connection closes
            self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = b"[" * (1024 * 1024)
        left = fault.huge_bytes
        while left > 0 and not self.fake._stopping.is_set():
            self.wfile.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--dimensions", type=int, default=8)
    parser.add_argument("--script", default="[]", help="JSON list of faults, e.g. '[{\"status\": 503}]'")
    args = parser.parse_args()
    fake = FakeEmbedder(port=args.port, dimensions=args.dimensions)
    fake.script(*(Fault(**spec) for spec in json.loads(args.script)))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with fake:
        print(f"fake embedder listening on {fake.url} with {len(fake._faults)} faults queued", flush=True)
        try:
            done.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
