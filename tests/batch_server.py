"""A fake OpenAI Batch API on 127.0.0.1: files and batches, with scripted delays and failures.

It implements what Sidecar uses — ``POST /v1/files`` (multipart, purpose ``batch``),
``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches`` (list),
``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel`` — and answers embedding lines with
the same deterministic vectors as tests/fault_server.py (``fake_vector``), base64-encoded as
OpenAI sends them, so a test can check exactly what was stored.

The script (attributes, changed by a test at any time):

* ``polls_before_done``: how many polls of a batch answer ``in_progress`` first;
* ``outcome``: what a batch ends as — ``completed``, ``failed`` (validation refused, no output),
  ``expired`` (the first ``lines_finished`` lines answered, the rest in the error file with
  ``batch_expired``);
* a cancelled batch answers its first ``lines_finished`` lines and drops the rest;
* ``line_status``: text marker → HTTP status, for lines whose input contains the marker (a 500
  or a 400 for one document), written to the error file as OpenAI does;
* ``api_faults``: statuses answered, in order, to the next API requests (a 503 on create).
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fault_server import fake_vector


class FakeBatchApi:
    def __init__(self, dimensions: int = 8):
        self.dimensions = dimensions
        self.polls_before_done = 1
        self.outcome = "completed"
        self.lines_finished: int | None = None
        self.line_status: dict[str, int] = {}
        self.api_faults: list[int] = []
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self._polls: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))

    def input_lines(self, batch_id: str) -> list[dict]:
        return [json.loads(line) for line in self.files[self.batches[batch_id]["input_file_id"]].splitlines()]

    # --- what the handler calls ---------------------------------------------------------

    def upload(self, fields: dict[str, bytes]) -> tuple[int, dict]:
        if fields.get("purpose") != b"batch" or "file" not in fields:
            return 400, _error("purpose must be batch and a file must be given")
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = fields["file"]
        return 200, {"id": file_id, "object": "file", "bytes": len(fields["file"]), "purpose": "batch"}

    def create(self, body: dict) -> tuple[int, dict]:
        if body.get("input_file_id") not in self.files or body.get("endpoint") != "/v1/embeddings":
            return 400, _error("unknown input_file_id or endpoint")
        batch_id = f"batch_{next(self._ids)}"
        lines = self.files[body["input_file_id"]].splitlines()
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": "/v1/embeddings", "status": "validating",
            "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window"),
            "output_file_id": None, "error_file_id": None, "errors": None,
            "metadata": body.get("metadata") or {},
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
        }  # fmt: skip
        self._polls[batch_id] = 0
        return 200, self.batches[batch_id]

    def get(self, batch_id: str) -> tuple[int, dict]:
        batch = self.batches.get(batch_id)
        if batch is None:
            return 404, _error(f"no batch {batch_id}")
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            return 200, batch
        self._polls[batch_id] += 1
        if batch["status"] == "cancelling":
            self._finish(batch, "cancelled")
        elif self._polls[batch_id] > self.polls_before_done:
            self._finish(batch, self.outcome)
        else:
            batch["status"] = "in_progress"
        return 200, batch

    def cancel(self, batch_id: str) -> tuple[int, dict]:
        batch = self.batches.get(batch_id)
        if batch is None:
            return 404, _error(f"no batch {batch_id}")
        batch["status"] = "cancelling"
        return 200, batch

    def _finish(self, batch: dict, status: str) -> None:
        batch["status"] = status
        if status == "failed":
            batch["errors"] = {"data": [{"code": "invalid_request", "message": "line 1: model not found"}]}
            return
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]].splitlines()]
        answered = lines if status == "completed" else lines[: self.lines_finished or 0]
        output, errors = [], []
        for line in answered:
            texts = line["body"]["input"]
            failing = next(
                (code for marker, code in self.line_status.items() if any(marker in t for t in texts)), None
            )
            if failing:
                errors.append(_answer(line, failing, _error(f"scripted {failing}")))
            else:
                output.append(_answer(line, 200, self._embeddings(texts, line["body"])))
        if status == "expired":
            for line in lines[len(answered) :]:
                errors.append({"id": f"req_{next(self._ids)}", "custom_id": line["custom_id"], "response": None,
                               "error": {"code": "batch_expired", "message": "not run before the batch expired"}})  # fmt: skip
        batch["request_counts"] = {"total": len(lines), "completed": len(output), "failed": len(errors)}
        for field, content in (("output_file_id", output), ("error_file_id", errors)):
            if content:
                file_id = f"file-{next(self._ids)}"
                self.files[file_id] = b"".join(json.dumps(item).encode() + b"\n" for item in content)
                batch[field] = file_id

    def _embeddings(self, texts: list[str], body: dict) -> dict:
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = fake_vector(text, self.dimensions)
            embedding = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode() if as_base64 else vector.tolist()
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        return {
            "object": "list",
            "data": data,
            "usage": {"prompt_tokens": sum(len(t) // 4 + 1 for t in texts)},
        }


def _answer(line: dict, status: int, body: dict) -> dict:
    return {"id": f"req_{line['custom_id']}", "custom_id": line["custom_id"],
            "response": {"status_code": status, "request_id": "r", "body": body}, "error": None}  # fmt: skip


def _error(message: str) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error"}}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, status: int, body) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "application/octet-stream" if isinstance(body, bytes) else "application/json"
        )
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _handle(self, method: str) -> None:
        fake: FakeBatchApi = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0]
        with fake._lock:
            fake.requests.append((method, path))
            if fake.api_faults:
                self._reply(fake.api_faults.pop(0), _error("scripted fault"))
                return
            status, body = self._route(fake, method, path, raw)
        self._reply(status, body)

    def _route(self, fake: FakeBatchApi, method: str, path: str, raw: bytes):
        parts = path.strip("/").split("/")  # v1, files|batches, id, content|cancel
        if method == "POST" and parts == ["v1", "files"]:
            return fake.upload(_form_fields(self.headers.get("Content-Type", ""), raw))
        if method == "GET" and len(parts) == 4 and parts[1] == "files" and parts[3] == "content":
            content = fake.files.get(parts[2])
            return (200, content) if content is not None else (404, _error("no such file"))
        if method == "POST" and parts == ["v1", "batches"]:
            return fake.create(json.loads(raw))
        if method == "GET" and parts == ["v1", "batches"]:
            newest_first = list(reversed(fake.batches.values()))
            return 200, {"object": "list", "data": newest_first[:100], "has_more": False}
        if method == "GET" and len(parts) == 3 and parts[1] == "batches":
            return fake.get(parts[2])
        if method == "POST" and len(parts) == 4 and parts[1] == "batches" and parts[3] == "cancel":
            return fake.cancel(parts[2])
        return 404, _error(f"no route {method} {path}")

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


def _form_fields(content_type: str, raw: bytes) -> dict[str, bytes]:
    message = BytesParser(policy=email_policy).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[name] = part.get_payload(decode=True)
    return fields
