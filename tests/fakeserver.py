"""A scriptable OpenAI-compatible chat-completions server on 127.0.0.1 for the tests.

It answers real HTTP. By default each request gets a valid answer synthesised
from the JSON Schema in the request's `response_format`; a test can queue
scripted behaviours (HTTP errors with headers, malformed JSON, schema-invalid
answers, `finish_reason: length`, empty choices, slow answers, hangs).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def synthesise(schema: dict[str, Any], path: str = "") -> Any:
    """A valid instance of a (specialised, ref-free) schema; texts are distinct per path."""
    if "enum" in schema:
        values = schema["enum"]
        if schema.get("type") == "integer":
            return values[len(values) // 2]
        return "tie" if "tie" in values else values[0]
    kind = schema.get("type")
    if kind == "object":
        return {k: synthesise(v, f"{path}.{k}") for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        n = max(1, schema.get("minItems", 1))
        return [synthesise(schema["items"], f"{path}[{i}]") for i in range(n)]
    if kind == "integer":
        return max(schema.get("minimum", 0), min(schema.get("maximum", 100), 50))
    if kind == "string" and schema.get("pattern", "").startswith("^P"):
        return "P1"  # a passage id (citations without the pair's enum of ids)
    if kind == "string":
        words = [w for w in path.replace("[", " ").replace("]", " ").replace(".", " ").split() if w]
        text = " ".join(words[-3:]).capitalize() + " text"
        low, high = schema.get("minLength", 0), schema.get("maxLength", 10_000)
        text = text[:high]
        while len(text) < low:
            text += " detail"
        return text[:high]
    if "anyOf" in schema:
        return synthesise(schema["anyOf"][0], path)
    raise ValueError(f"cannot synthesise {schema}")


Behaviour = dict[str, Any]


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
    # Decides the behaviour from the request itself (e.g. by pair), before the queue and default.
    chooser: Callable[[dict[str, Any]], Behaviour | None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0
    server: ThreadingHTTPServer | None = None

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

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        schema = request.get("response_format", {}).get("json_schema", {}).get("schema") or request.get(
            "response_format", {}
        ).get("schema")
        if schema is None:
            raise ValueError("this fake server needs a schema in response_format")
        data = synthesise(schema)
        if self.mutate:
            data = self.mutate(copy.deepcopy(data), request)
        return data

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
                body = json.loads(self.rfile.read(length) or b"{}")
                with state.lock:
                    state.requests.append(body)
                    state.headers.append(dict(self.headers))
                    state.times.append(time.monotonic())
                b = (state.chooser(body) if state.chooser else None) or state.next()
                kind = b["kind"]
                if kind == "hang":
                    time.sleep(b.get("seconds", 30))
                    return
                if kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if kind == "status":
                    payload = b.get(
                        "body",
                        {"error": {"message": b.get("message", "error"), "type": "error", "code": b.get("code")}},
                    )
                    self._send(b["status"], json.dumps(payload).encode(), b.get("headers", {}))
                    return
                time.sleep(b.get("delay", 0))
                finish = "length" if kind == "length" else "stop"
                if kind == "invalid_json":
                    content = '{"a": {"subject": "broken'
                elif kind == "content":
                    content = b["content"]
                else:
                    data = state.answer(body)
                    if kind == "schema_invalid":
                        data.pop("verdict", None)
                    if "patch" in b:
                        data = b["patch"](data)
                    content = json.dumps(data)
                choices = (
                    []
                    if kind == "empty_choices"
                    else [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}]
                )
                response = {
                    "id": f"chatcmpl-{state.calls}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": choices,
                    "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
                }
                self._send(200, json.dumps(response).encode(), {})

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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


if __name__ == "__main__":  # a standalone server for manual runs and subprocess tests
    import sys

    srv = FakeLLM().start()
    print(srv.base_url, flush=True)
    try:
        time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 3600)
    finally:
        srv.stop()
