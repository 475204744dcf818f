"""A deterministic OpenAI-compatible chat server for unit tests of the evaluator (the real one is vLLM).

Answers are a pure function of the prompt, so an interrupted run and an uninterrupted one must agree.
Behaviour per prompt, by marker words: LONG -> finish_reason "length"; FLAKY -> 503 on the first attempt;
BAD -> 400. The reasoning goes into `reasoning_field` ("reasoning" or "reasoning_content"); with
`usage=False` the server reports no token usage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Stub:
    def __init__(
        self,
        reasoning_field: str = "reasoning",
        usage: bool = True,
        delay_s: float = 0.0,
        answers: dict[str, str] | None = None,  # prompt -> the content to answer with, for the cases a test names
    ):
        self.reasoning_field, self.usage, self.delay_s = reasoning_field, usage, delay_s
        self.answers = answers or {}
        self.requests: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "Stub":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, payload: dict) -> tuple[int, dict]:
        prompt = payload["messages"][-1]["content"]
        seen = sum(
            1 for r in self.requests if r["messages"][-1]["content"] == prompt and r.get("seed") == payload.get("seed")
        )
        if "BAD" in prompt:
            return 400, {"error": {"message": "This model's maximum context length is 4096 tokens"}}
        if "FLAKY" in prompt and seen == 1:
            return 503, {"error": {"message": "overloaded"}}
        digest = int(hashlib.sha256(f"{prompt}|{payload.get('seed')}".encode()).hexdigest(), 16)
        number = prompt.split("=")[-1].strip() if "=" in prompt else str(digest % 10)
        content = f"So the answer is \\boxed{{{number}}}." if digest % 3 else f"I think it is \\boxed{{{digest % 7}}}."
        content = self.answers.get(prompt, content)
        reasoning = "first think about it carefully " * (1 + digest % 4)
        think = (payload.get("chat_template_kwargs") or {}).get("enable_thinking", True)
        message = {"role": "assistant", "content": content}
        if think:
            message[self.reasoning_field] = reasoning
        body = {
            "id": "x",
            "object": "chat.completion",
            "model": payload["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "length" if "LONG" in prompt else "stop"}],
        }
        if self.usage:
            words = len(content.split()) + (len(reasoning.split()) if think else 0)
            body["usage"] = {"prompt_tokens": len(prompt.split()), "completion_tokens": words, "total_tokens": 0}
        return 200, body

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append(payload)
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                    status, body = stub.answer(payload)
                try:
                    time.sleep(stub.delay_s)
                finally:  # before the answer leaves: once the client has it, it may send the next request at once
                    with stub.lock:
                        stub.in_flight -= 1
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


if __name__ == "__main__":  # serve until killed, printing the URL (for tests that need it in another process)
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=0.0)
    args = ap.parse_args()
    with Stub(delay_s=args.delay) as s:
        print(s.base_url, flush=True)
        threading.Event().wait()
