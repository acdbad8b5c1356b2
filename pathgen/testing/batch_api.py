"""OpenAI's Files and Batch API, and Mistral's batch jobs, on the local test server.

Routes: ``POST /v1/files`` (multipart: ``purpose``, ``file``; both SDKs), ``GET
/v1/files/{id}``, ``GET /v1/files/{id}/content``; OpenAI: ``POST /v1/batches``, ``GET
/v1/batches`` (list), ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``;
Mistral: ``POST /v1/batch/jobs``, ``GET /v1/batch/jobs`` (list), ``GET
/v1/batch/jobs/{id}``, ``POST /v1/batch/jobs/{id}/cancel`` (the same batches, shown in
Mistral's shape; a Mistral line's body takes the job's model).

A batch is ``in_progress`` for ``delay`` seconds after it is created, then runs every
line through the server's chat-completion logic (so ``[[fault:KIND]]`` markers fail
single lines) and completes with an output file (status 200 lines) and an error file
(the others). Faults of whole batches and lines, in creation order:

* ``expire``: indices of batches that end ``expired``; only the first half of their lines
  is in the output file (OpenAI returns what finished before the window closed);
* ``cancel``: indices of batches cancelled (as from the provider's console) when they
  would complete; likewise only the first half of their lines ran;
* ``fail_every``: every n-th line of every batch fails with a 500 (0: none).

Every line ever submitted is counted by ``custom_id`` in :attr:`BatchAPI.submitted`, so
tests can check nothing was submitted twice.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Answers one chat-completion body: (HTTP status, response JSON).
Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def _multipart(headers: dict[str, str], raw: bytes) -> dict[str, bytes]:
    ctype = headers.get("content-type", "")
    boundary = ctype.split("boundary=", 1)[1].strip('"').encode() if "boundary=" in ctype else b""
    fields: dict[str, bytes] = {}
    for part in raw.split(b"--" + boundary):
        head, sep, body = part.partition(b"\r\n\r\n")
        if not sep or b"name=" not in head:
            continue
        name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
        fields[name] = body[:-2] if body.endswith(b"\r\n") else body
    return fields


@dataclass
class BatchAPI:
    delay: float = 0.2
    expire: set[int] = field(default_factory=set)
    cancel: set[int] = field(default_factory=set)
    fail_every: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    submitted: Counter[str] = field(default_factory=Counter)

    def handles(self, path: str) -> bool:
        return path.startswith(("/v1/files", "/v1/batches", "/v1/batch/jobs"))

    def _file(self, content: bytes, purpose: str, name: str = "batch.jsonl") -> dict[str, Any]:
        fid = f"file-{secrets.token_hex(8)}"
        self.files[fid] = content
        return {
            "id": fid,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": name,
            "purpose": purpose,
            "status": "processed",
            "size_bytes": len(content),  # Mistral's names
            "sample_type": "batch_request",
            "source": "upload",
        }

    def respond(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, answer: Answer
    ) -> tuple[int, Any]:
        parts = path.split("?", 1)[0].strip("/").split("/")  # v1, files|batches, id, verb
        if parts[1] == "batch":  # Mistral: v1, batch, jobs, id, verb
            return self._mistral(method, parts[2:], raw, answer)
        if parts[1] == "files":
            if method == "POST" and len(parts) == 2:
                form = _multipart(headers, raw)
                return 200, self._file(form.get("file", b""), form.get("purpose", b"").decode())
            fid = parts[2] if len(parts) > 2 else ""
            if fid not in self.files:
                return 404, {"error": {"message": f"no file {fid}"}}
            if len(parts) == 4 and parts[3] == "content":
                return 200, self.files[fid]
            return 200, {"id": fid, "object": "file", "bytes": len(self.files[fid])}
        if method == "POST" and len(parts) == 2:
            return 200, self._create(json.loads(raw or b"{}"))
        if method == "GET" and len(parts) == 2:
            data = [self._advance(b, answer) for b in self.batches.values()]
            return 200, {"object": "list", "data": data[::-1], "has_more": False}
        batch = self.batches.get(parts[2])
        if batch is None:
            return 404, {"error": {"message": f"no batch {parts[2]}"}}
        if method == "POST" and parts[-1] == "cancel":
            if batch["status"] in ("validating", "in_progress"):
                batch.update(status="cancelled", cancelled_at=int(time.time()))
            return 200, batch
        return 200, self._advance(batch, answer)

    def _mistral(
        self, method: str, parts: list[str], raw: bytes, answer: Answer
    ) -> tuple[int, Any]:
        if method == "POST" and len(parts) == 1:
            body = json.loads(raw or b"{}")
            files = body.get("input_files") or [""]
            batch = self._create(
                {"input_file_id": files[0], "endpoint": body.get("endpoint"), **body},
                model=body.get("model"),
            )
            return 200, _as_mistral(batch)
        if method == "GET" and len(parts) == 1:
            data = [_as_mistral(self._advance(b, answer)) for b in self.batches.values()]
            return 200, {"object": "list", "total": len(data), "data": data[::-1]}
        batch = self.batches.get(parts[1])
        if batch is None:
            return 404, {"detail": f"no job {parts[1]}"}
        if method == "POST" and parts[-1] == "cancel" and batch["status"] == "in_progress":
            batch.update(status="cancelled", cancelled_at=int(time.time()))
        return 200, _as_mistral(self._advance(batch, answer))

    def _create(self, body: dict[str, Any], model: str | None = None) -> dict[str, Any]:
        content = self.files.get(body.get("input_file_id", ""), b"")
        lines = [json.loads(x) for x in content.splitlines() if x.strip()]
        self.submitted.update(str(line.get("custom_id")) for line in lines)
        now = time.time()
        batch = {
            "id": f"batch_{secrets.token_hex(8)}",
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "input_file_id": body.get("input_file_id"),
            "completion_window": body.get("completion_window", "24h"),
            "status": "in_progress",
            "created_at": int(now),
            "in_progress_at": int(now),
            "metadata": body.get("metadata"),
            "output_file_id": None,
            "error_file_id": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "_ready_at": now + self.delay,
            "_index": len(self.batches),
            "model": model,
            "_model": model,
        }
        self.batches[batch["id"]] = batch
        return batch

    def _advance(self, batch: dict[str, Any], answer: Answer) -> dict[str, Any]:
        if batch["status"] != "in_progress" or time.time() < batch["_ready_at"]:
            return {k: v for k, v in batch.items() if not k.startswith("_")}
        lines = [
            json.loads(x) for x in self.files[batch["input_file_id"]].splitlines() if x.strip()
        ]
        expired = batch["_index"] in self.expire
        cancelled = batch["_index"] in self.cancel
        if expired or cancelled:
            lines = lines[: len(lines) // 2]
        out, errors = [], []
        for n, line in enumerate(lines, start=1):
            body = dict(line.get("body") or {})
            if batch["_model"]:
                body.setdefault("model", batch["_model"])
            status, payload = answer(body)
            if self.fail_every and n % self.fail_every == 0:
                status, payload = 500, {"error": {"message": "mock batch line failure"}}
            row = {
                "id": f"batch_req_{secrets.token_hex(6)}",
                "custom_id": line.get("custom_id"),
                "response": {"status_code": status, "request_id": "req", "body": payload},
                "error": None,
            }
            (out if status == 200 else errors).append(json.dumps(row))
        now = int(time.time())
        batch["output_file_id"] = self._file(("\n".join(out) + "\n").encode(), "batch_output")["id"]
        if errors:
            content = ("\n".join(errors) + "\n").encode()
            batch["error_file_id"] = self._file(content, "batch_output")["id"]
        batch["request_counts"] = {
            "total": batch["request_counts"]["total"],
            "completed": len(out),
            "failed": len(errors),
        }
        if expired:
            batch.update(status="expired", expired_at=now)
        elif cancelled:
            batch.update(status="cancelled", cancelled_at=now)
        else:
            batch.update(status="completed", completed_at=now)
        return {k: v for k, v in batch.items() if not k.startswith("_")}


_MISTRAL_STATUS = {
    "validating": "QUEUED",
    "in_progress": "RUNNING",
    "completed": "SUCCESS",
    "expired": "TIMEOUT_EXCEEDED",
    "cancelled": "CANCELLED",
    "failed": "FAILED",
}


def _as_mistral(batch: dict[str, Any]) -> dict[str, Any]:
    """A batch in the shape of Mistral's ``BatchJob``."""
    counts = batch.get("request_counts") or {}
    return {
        "id": batch["id"],
        "object": "batch",
        "input_files": [batch["input_file_id"]],
        "endpoint": batch["endpoint"],
        "model": batch.get("model"),
        "metadata": batch.get("metadata"),
        "errors": [],
        "status": _MISTRAL_STATUS[batch["status"]],
        "created_at": batch["created_at"],
        "total_requests": counts.get("total", 0),
        "completed_requests": counts.get("completed", 0) + counts.get("failed", 0),
        "succeeded_requests": counts.get("completed", 0),
        "failed_requests": counts.get("failed", 0),
        "output_file": batch.get("output_file_id"),
        "error_file": batch.get("error_file_id"),
    }
