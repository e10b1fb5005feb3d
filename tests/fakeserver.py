"""A scriptable OpenAI-compatible chat-completions server on 127.0.0.1 for the tests.

It answers real HTTP. By default each request gets a valid answer synthesised
from the JSON Schema in the request's `response_format`; a test can queue
scripted behaviours (HTTP errors with headers, malformed JSON, schema-invalid
answers, `finish_reason: length`, refusals, content filtering, empty choices,
slow answers, hangs). Like OpenAI, it rejects `max_tokens` and sampling
parameters for reasoning models (o-series, gpt-5), and every request it gets and
every answer it sends is checked against OpenAI's published types
(tests/contract.py); `violations` lists what was not.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests import contract

REASONING = re.compile(r"^(o\d|gpt-5(?!.*-chat))")


def synthesise(schema: dict[str, Any], path: str = "", subject: str = "") -> Any:
    """A valid instance of a (specialised, ref-free) schema that passes the content gates.

    Texts are distinct per path and end like sentences, questions name subject a, names stay
    names; levels take the middle one, percentages 60 and ratings the middle rating (6), which agree; both
    subjects get the same ratings, so the answer is a tie and its reasoning says so.
    """
    if not path:
        props = schema.get("properties", {})
        subject = (props.get("a", {}).get("properties", {}).get("subject", {}).get("enum")  # a whole pair
                   or props.get("subject", {}).get("enum")  # a profile
                   or props.get("verdict", {}).get("properties", {}).get("winner", {}).get("enum")  # a pair's texts
                   or ["the first subject"])[0]  # fmt: skip
    if "enum" in schema:
        values = schema["enum"]
        if "tie" in values:
            return "tie"
        return values[len(values) // 2]
    kind = schema.get("type")
    if kind == "object":
        return {
            k: synthesise(v, f"{path}.{k}" if path else k, subject) for k, v in schema.get("properties", {}).items()
        }
    if kind == "array" and "prefixItems" in schema:
        return [synthesise(item, f"{path}[{i}]", subject) for i, item in enumerate(schema["prefixItems"])]
    if kind == "array":
        n = max(1, schema.get("minItems", 1))
        return [synthesise(schema["items"], f"{path}[{i}]", subject) for i in range(n)]
    if kind == "integer":
        return max(schema.get("minimum", 0), min(schema.get("maximum", 100), 60))  # a percentage rated 6
    if kind == "string" and schema.get("pattern", "").startswith("^P"):
        return "P1"  # a passage id (citations without the pair's enum of ids)
    if kind == "string":
        words = [w for w in path.replace("[", " ").replace("]", " ").replace(".", " ").split() if w]
        last = words[-1] if words else ""
        if last == "question":
            text = f"How does {subject} do in {' '.join(words[:-1])}?"
        elif last == "reasoning":
            text = "It is a tie: both subjects get the same ratings on every dimension."
        elif path.startswith("alternatives") or ".value" in path:
            text = " ".join(words[-3:]).capitalize() + " text"  # a name or a phrase
        else:
            text = " ".join(words).capitalize() + " text."
        low, high = schema.get("minLength", 0), schema.get("maxLength", 10_000)
        while len(text) < low:
            text = text.rstrip(".?") + " detail."
        return text[:high]
    if "anyOf" in schema:
        return synthesise(schema["anyOf"][0], path, subject)
    raise ValueError(f"cannot synthesise {schema}")


Behaviour = dict[str, Any]


def _error(message: str, kind: str, code: Any = None, param: Any = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) drops connections when 16-64 clients connect at once, and
    # the kernel's 1 s SYN retry would then show up as model latency in the benchmarks.
    request_queue_size = 256


@dataclass
class FakeLLM:
    """Server state; tests queue behaviours and read the requests it saw."""

    queue: deque[Behaviour] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    default: Behaviour = field(default_factory=lambda: {"kind": "valid"})
    mutate: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None
    # Like `mutate`, with the choice's index too (a request with `n` gets n choices): a noise model.
    noise: Callable[[dict[str, Any], dict[str, Any], int], dict[str, Any]] | None = None
    # Decides the behaviour from the request itself (e.g. by pair), before the queue and default.
    chooser: Callable[[dict[str, Any]], Behaviour | None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    violations: list[str] = field(default_factory=list)  # requests and answers that break OpenAI's types
    paths: list[str] = field(default_factory=list)  # the URL path (and query) of each chat request
    port: int = 0
    server: ThreadingHTTPServer | None = None
    api: FakeBatchAPI = field(init=False)

    def __post_init__(self) -> None:
        self.api = FakeBatchAPI(self)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def calls(self) -> int:
        return len(self.requests)

    def push(self, *behaviours: Behaviour) -> None:
        self.queue.extend(behaviours)

    def next(self) -> Behaviour:
        with self.lock:
            return self.queue.popleft() if self.queue else dict(self.default)

    def answer(self, request: dict[str, Any], choice: int = 0) -> dict[str, Any]:
        schema = request.get("response_format", {}).get("json_schema", {}).get("schema") or request.get(
            "response_format", {}
        ).get("schema")
        if schema is None:
            raise ValueError("this fake server needs a schema in response_format")
        data = synthesise(schema)
        if self.mutate:
            data = self.mutate(copy.deepcopy(data), request)
        if self.noise:
            data = self.noise(copy.deepcopy(data), request, choice)
        return data

    def respond(self, body: dict[str, Any], b: Behaviour) -> tuple[int, dict[str, Any], dict[str, str]]:
        """The HTTP status, JSON body and headers of a chat-completions answer for behaviour `b`."""
        kind = b["kind"]
        rejected = self.reasoning_rejects(body)
        if rejected is not None and kind == "valid":
            return 400, rejected, {}
        if kind in ("status", "hang", "drop"):
            payload = b.get("body", _error(b.get("message", "error"), "error", b.get("code"), b.get("param")))
            return b.get("status", 500), payload, b.get("headers", {})
        finish = {"length": "length", "content_filter": "content_filter"}.get(kind, "stop")
        refusal = None
        content: str | None = None
        if kind == "refusal":
            content, refusal = None, b.get("reason", "I'm sorry, but I can't help with that request.")
        elif kind == "invalid_json":
            content = '{"a": {"subject": "broken'
        elif kind == "content":
            content = b["content"]
        contents: list[str | None] = (
            [content] if kind in ("refusal", "content_filter", "invalid_json", "content") else []
        )
        # `n` choices (OpenAI's); a scripted behaviour other than a valid answer gets one.
        for index in range(int(body.get("n") or 1) if not contents else 0):
            data = self.answer(body, index)
            if kind == "schema_invalid":  # a required property missing: a pair's verdict, or a profile's dimensions
                data.pop("verdict" if "verdict" in data else "dimensions", None)
            if "patch" in b:
                data = b["patch"](data)
            contents.append(json.dumps(data))
        choices = (
            []
            if kind == "empty_choices"
            else [
                {"index": i, "message": {"role": "assistant", "content": text, "refusal": refusal}, "logprobs": None,
                 "finish_reason": finish}
                for i, text in enumerate(contents)
            ]
        )  # fmt: skip
        response = {
            "id": f"chatcmpl-{self.calls}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": choices,
            "usage": b.get("usage", {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}),
        }
        return 200, response, b.get("headers", {})

    def reasoning_rejects(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """OpenAI's 400 for parameters a reasoning model does not take (None: the request is fine)."""
        if not REASONING.match(str(body.get("model", ""))):
            return None
        if "max_tokens" in body:
            return _error("Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                          "'max_completion_tokens' instead.", "invalid_request_error", "unsupported_parameter",
                          "max_tokens")  # fmt: skip
        for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
            if name in body and body[name] != 1:
                return _error(f"Unsupported value: '{name}' does not support {body[name]} with this model. Only "
                              "the default (1) value is supported.", "invalid_request_error", "unsupported_value",
                              name)  # fmt: skip
        return None

    def start(self) -> FakeLLM:
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the client's delayed ACK
            # would add 40 ms to every answer (as latency no real server has).
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                if len(raw) < length:  # the client went away mid-request (a killed process): nothing to answer
                    self.close_connection = True
                    return
                if self.path.rstrip("/").endswith(("/files", "/batches")) or "/batches/" in self.path:
                    self._reply(state.api.post(self.path, raw, self.headers.get("content-type", "")))
                    return
                body = json.loads(raw or b"{}")
                with state.lock:
                    state.requests.append(body)
                    state.headers.append(dict(self.headers))
                    state.times.append(time.monotonic())
                    state.paths.append(self.path)
                    state.violations += contract.chat_request(body)
                b = (state.chooser(body) if state.chooser else None) or state.next()
                kind = b["kind"]
                if kind == "hang":
                    time.sleep(b.get("seconds", 30))
                    return
                if kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                time.sleep(b.get("delay", 0))
                status, payload, headers = state.respond(body, b)
                found = contract.chat_response(payload) if status == 200 else contract.error_response(payload)
                if found and "body" not in b and not b.get("odd"):  # scripted oddities are deliberate
                    with state.lock:
                        state.violations += found
                self._send(status, json.dumps(payload).encode(), headers)

            def do_GET(self) -> None:
                self._reply(state.api.get(self.path))

            def do_DELETE(self) -> None:
                self._reply(state.api.delete(self.path))

            def _reply(self, answer: tuple[int, Any]) -> None:
                status, payload = answer
                if isinstance(payload, bytes):
                    self.send_response(status)
                    self.send_header("content-type", "application/octet-stream")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self._send(status, json.dumps(payload).encode(), {})

            def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


class FakeBatchAPI:
    """The Files and Batches endpoints, close enough for the `openai` SDK.

    A batch is processed when it is first retrieved after creation, each line answered by the
    chat behaviour of the owning FakeLLM (chooser, queue, default). `mode` decides its fate:
    "complete"; "hold" (stays in_progress until cancelled, then `answer_before_cancel` lines are
    answered); "expire" (the first `expire_after` lines answered, the rest `batch_expired`);
    "fail" (the input is rejected: status failed with an error).
    """

    def __init__(self, llm: FakeLLM):
        self.llm = llm
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.mode = "complete"
        self.expire_after = 0
        self.answer_before_cancel = 0
        self.creates = 0
        self.fail_creates = 0  # answer this many creates with HTTP 503
        self.polls_before_done = 0  # a batch stays in_progress for this many retrieves
        self.uploads = 0
        self.downloads = 0
        self.lock = threading.Lock()

    # -- routing -------------------------------------------------------------------------------

    def post(self, path: str, raw: bytes, content_type: str) -> tuple[int, Any]:
        path = path.split("?")[0].rstrip("/")
        with self.lock:
            if path.endswith("/files"):
                return self._upload(raw, content_type)
            if path.endswith("/batches"):
                return self._create(json.loads(raw or b"{}"))
            if path.endswith("/cancel"):
                return self._cancel(path.split("/")[-2])
        return 404, {"error": {"message": f"no route {path}"}}

    def get(self, path: str) -> tuple[int, Any]:
        route = path.partition("?")[0]
        route = route.rstrip("/")
        with self.lock:
            if route.endswith("/batches"):
                data = [self._public(b) for b in sorted(self.batches.values(), key=lambda b: -b["seq"])]
                return 200, {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                             "last_id": data[-1]["id"] if data else None, "has_more": False}  # fmt: skip
            if "/batches/" in route:
                batch = self.batches.get(route.split("/")[-1])
                if batch is None:
                    return 404, {"error": {"message": "no such batch", "type": "invalid_request_error"}}
                self._progress(batch)
                return 200, self._public(batch)
            if route.endswith("/content"):
                file_id = route.split("/")[-2]
                if file_id not in self.files:
                    return 404, {"error": {"message": "no such file"}}
                self.downloads += 1
                return 200, self.files[file_id]
        return 404, {"error": {"message": f"no route {route}"}}

    def delete(self, path: str) -> tuple[int, Any]:
        file_id = path.rstrip("/").split("/")[-1]
        with self.lock:
            self.files.pop(file_id, None)
        return 200, {"id": file_id, "object": "file", "deleted": True}

    # -- endpoints -----------------------------------------------------------------------------

    def _upload(self, raw: bytes, content_type: str) -> tuple[int, Any]:
        # multipart/form-data by hand: the email parser takes minutes on a 100 MB upload
        boundary = content_type.split("boundary=", 1)[-1].strip('"').encode()
        fields: dict[str, Any] = {}
        for chunk in raw.split(b"--" + boundary)[1:]:
            head, _, body = chunk.partition(b"\r\n\r\n")
            match = re.search(rb'name="([^"]*)"', head)
            if match:
                fields[match.group(1).decode()] = body[:-2] if body.endswith(b"\r\n") else body
        if fields.get("purpose") != b"batch" or "file" not in fields:
            return 400, {"error": {"message": "purpose must be batch and a file is required"}}
        self.uploads += 1
        file_id = f"file-{len(self.files) + 1:04d}"
        self.files[file_id] = fields["file"]
        for line in fields["file"].decode().splitlines():
            if line.strip():
                self.llm.violations += contract.batch_line(json.loads(line))
        obj = {"id": file_id, "object": "file", "bytes": len(fields["file"]), "created_at": int(time.time()),
               "filename": "input.jsonl", "purpose": "batch", "status": "processed"}  # fmt: skip
        self.llm.violations += contract.file_object(obj)
        return 200, obj

    def _create(self, body: dict[str, Any]) -> tuple[int, Any]:
        self.llm.violations += contract.batch_create(body)
        if self.fail_creates:
            self.fail_creates -= 1
            return 503, {"error": {"message": "the service is overloaded", "type": "server_error"}}
        if body.get("input_file_id") not in self.files:
            return 400, {"error": {"message": "input_file_id not found", "type": "invalid_request_error"}}
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return 400, {"error": {"message": "unsupported endpoint or completion window"}}
        self.creates += 1
        batch_id = f"batch_{self.creates:04d}"
        lines = [json.loads(line) for line in self.files[body["input_file_id"]].decode().splitlines() if line]
        self.batches[batch_id] = {
            "id": batch_id, "seq": self.creates, "input_file_id": body["input_file_id"], "status": "validating",
            "metadata": body.get("metadata") or {}, "lines": lines, "answered": 0, "output": [], "errors": [],
            "created_at": int(time.time()), "error_list": None,
        }  # fmt: skip
        return 200, self._public(self.batches[batch_id])

    def _cancel(self, batch_id: str) -> tuple[int, Any]:
        batch = self.batches.get(batch_id)
        if batch is None:
            return 404, {"error": {"message": "no such batch"}}
        if batch["status"] in ("validating", "in_progress", "finalizing"):
            batch["status"] = "cancelling"
        return 200, self._public(batch)

    # -- processing ----------------------------------------------------------------------------

    def _progress(self, batch: dict[str, Any]) -> None:
        status = batch["status"]
        if status == "validating":
            problem = self._invalid(batch["lines"])
            if self.mode == "fail" or problem:
                batch["status"] = "failed"
                batch["error_list"] = [{"code": "invalid_request", "message": problem or "the input was rejected",
                                        "line": 1, "param": None}]  # fmt: skip
                return
            batch["status"] = "in_progress"
            batch["polls"] = 0
        if batch["status"] == "in_progress":
            batch["polls"] += 1
            if self.mode == "hold" or batch["polls"] <= self.polls_before_done:
                return
            count = self.expire_after if self.mode == "expire" else len(batch["lines"])
            self._answer(batch, batch["lines"][:count])
            if self.mode == "expire":
                for line in batch["lines"][count:]:
                    batch["errors"].append({"id": f"batch_req_{line['custom_id']}", "custom_id": line["custom_id"],
                                            "response": None, "error": {"code": "batch_expired", "message":
                                            "This request could not be executed before the completion window "
                                            "expired."}})  # fmt: skip
            self._finish(batch, "expired" if self.mode == "expire" else "completed")
        elif status == "cancelling":
            self._answer(batch, batch["lines"][: self.answer_before_cancel])
            self._finish(batch, "cancelled")

    @staticmethod
    def _invalid(lines: list[dict[str, Any]]) -> str:
        seen = set()
        for number, line in enumerate(lines, 1):
            if line.get("method") != "POST" or line.get("url") != "/v1/chat/completions":
                return f"line {number}: method must be POST and url /v1/chat/completions"
            if line.get("custom_id") in seen:
                return f"line {number}: duplicate custom_id {line.get('custom_id')}"
            seen.add(line.get("custom_id"))
        return ""

    def _answer(self, batch: dict[str, Any], lines: list[dict[str, Any]]) -> None:
        llm = self.llm
        for line in lines:
            body = line["body"]
            with llm.lock:
                llm.requests.append(body)
                llm.times.append(time.monotonic())
            b = (llm.chooser(body) if llm.chooser else None) or llm.next()
            status, payload, _ = llm.respond(body, b)
            response = {"status_code": status, "request_id": "req_1", "body": payload}
            entry = {"id": f"batch_req_{line['custom_id']}", "custom_id": line["custom_id"], "response": response,
                     "error": None}  # fmt: skip
            (batch["output"] if status == 200 else batch["errors"]).append(entry)
            batch["answered"] += 1

    def _finish(self, batch: dict[str, Any], status: str) -> None:
        for key, name in (("output", "output_file_id"), ("errors", "error_file_id")):
            if batch[key]:
                file_id = f"file-{len(self.files) + 1:04d}"
                self.files[file_id] = "".join(json.dumps(e) + "\n" for e in batch[key]).encode()
                batch[name] = file_id
        batch["status"] = status

    def _public(self, batch: dict[str, Any]) -> dict[str, Any]:
        failed = len(batch["errors"])
        obj = {
            "id": batch["id"], "object": "batch", "endpoint": "/v1/chat/completions",
            "errors": {"object": "list", "data": batch["error_list"]} if batch["error_list"] else None,
            "input_file_id": batch["input_file_id"], "completion_window": "24h", "status": batch["status"],
            "output_file_id": batch.get("output_file_id"), "error_file_id": batch.get("error_file_id"),
            "created_at": batch["created_at"], "metadata": batch["metadata"],
            "request_counts": {"total": len(batch["lines"]), "completed": len(batch["output"]), "failed": failed},
        }  # fmt: skip
        self.llm.violations += contract.batch_object(obj)
        return obj


if __name__ == "__main__":  # a standalone server for manual runs and subprocess tests
    import sys

    srv = FakeLLM().start()
    print(srv.base_url, flush=True)
    try:
        time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 3600)
    finally:
        srv.stop()
