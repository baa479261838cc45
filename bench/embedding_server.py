"""A stand-in for a remote embedding API, for the `http` scenario: OpenAI-compatible
`POST /v1/embeddings` on 127.0.0.1 that answers every request after a fixed latency.

    python -m bench.embedding_server --latency 0.05 [--port 0] [--dimensions 384]

Not a model, and not tests/fault_server.py (that one scripts faults and records every request
for assertions; here it is the server's own CPU that must stay out of the way). Each text
gets one of 256 deterministic unit vectors, picked by a CRC of the text, whose JSON is
written once at start, so an answer costs a sleep, a JSON parse of the request and a string
join: on a shared 2-core machine the server should not be what saturates. One thread per
connection (keep-alive), so concurrent workers wait concurrently.

Prints `listening <port>`; on stdin closing, prints `served <requests> <texts> <CPU seconds
spent serving>` and exits.
"""

import argparse
import base64
import json
import resource
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

VECTORS = 256


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the provider's client pools its connections
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass

    def do_POST(self):
        server = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            payload = json.loads(body)
            texts = payload["input"]
            texts = [texts] if isinstance(texts, str) else list(texts)
        except (ValueError, KeyError, TypeError):
            return self._send(400, b'{"error": {"message": "expected {\\"input\\": [...]}"}}')
        time.sleep(server.latency)
        # As OpenAI: base64 of the float32 bytes when asked for, else lists of floats.
        encoded = server.vector_base64 if payload.get("encoding_format") == "base64" else server.vector_json
        rows = ",".join(
            f'{{"object":"embedding","index":{i},"embedding":{encoded[zlib.crc32(t.encode()) % VECTORS]}}}'
            for i, t in enumerate(texts)
        )
        tokens = sum(len(t) // 4 + 1 for t in texts)
        answer = (
            f'{{"object":"list","model":"{payload.get("model", "")}","data":[{rows}],'
            f'"usage":{{"prompt_tokens":{tokens},"total_tokens":{tokens}}}}}'
        )
        with server.lock:
            server.requests += 1
            server.texts += len(texts)
        self._send(200, answer.encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def make_server(latency: float, dimensions: int, port: int = 0) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    server.latency = latency
    server.lock = threading.Lock()
    server.requests = server.texts = 0
    rng = np.random.default_rng(4321)
    vectors = rng.standard_normal((VECTORS, dimensions))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    server.vector_json = [json.dumps([round(float(x), 7) for x in row]) for row in vectors]
    server.vector_base64 = [
        json.dumps(base64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode()) for row in vectors
    ]
    return server


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.embedding_server")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before every answer")
    parser.add_argument("--dimensions", type=int, default=384)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = make_server(args.latency, args.dimensions, args.port)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    ready_cpu = cpu_seconds()  # start-up (numpy, the vectors' JSON) is not serving
    print(f"listening {server.server_address[1]}", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.shutdown()
    print(f"served {server.requests} {server.texts} {cpu_seconds() - ready_cpu:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
