"""An async client for OpenAI-compatible chat completions (vLLM's), built to keep every field of an answer.

Bounded concurrency (a semaphore), a per-request timeout, and retries with exponential backoff on transient
failures (connection errors, 408/429/5xx). A 4xx other than those is the request's own fault (e.g. a prompt
longer than the context): it is returned as an error at once, not retried.

The transport is aiohttp, as in `vllm bench serve`. httpx was tried and measured (bench/README.md): at 128
requests in flight its connection pool costs milliseconds per request, and at GPU pace, where a server finishes
a batch of equal-length answers at once, that delay refilled the batch slowly: 14.7 s against aiohttp's 6.1 s
for 384 requests held 2 s each by a stub server, and 14% of the output throughput on an H200.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field

import aiohttp

from quant_dag.serve.verify import reasoning_of

RETRY_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # e.g. http://127.0.0.1:8000 (no /v1)
    api_key: str
    model: str


@dataclass
class ChatResult:
    """One chat completion as the server returned it, reasoning read from whichever field carries it."""

    content: str = ""
    reasoning: str = ""
    reasoning_field: str | None = None  # "reasoning" (vLLM >= 0.10-ish) or "reasoning_content" (older), None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None  # from usage.completion_tokens_details, when the server reports it
    latency_s: float = 0.0
    attempts: int = 0
    error: str | None = None
    raw_usage: dict | None = field(default=None, repr=False)


def parse_completion(body: dict) -> ChatResult:
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    reasoning, reasoning_field = reasoning_of(message)
    usage = body.get("usage") or None
    details = (usage or {}).get("completion_tokens_details") or {}
    return ChatResult(
        content=message.get("content") or "",
        reasoning=reasoning,
        reasoning_field=reasoning_field,
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=usage.get("prompt_tokens") if usage else None,
        completion_tokens=usage.get("completion_tokens") if usage else None,
        reasoning_tokens=details.get("reasoning_tokens"),
        raw_usage=usage,
    )


class ChatClient:
    """Use as `async with ChatClient(endpoint, concurrency=8) as c: await c.chat(messages, **params)`."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        concurrency: int = 8,
        timeout_s: float = 1800,
        max_retries: int = 4,
        backoff_s: float = 1.0,
    ):
        self.endpoint = endpoint
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._sem = asyncio.Semaphore(concurrency)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "ChatClient":
        self._url = f"{self.endpoint.base_url.rstrip('/')}/v1/chat/completions"
        self._http = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.endpoint.api_key}"},
            timeout=aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=30),
            connector=aiohttp.TCPConnector(limit=self.concurrency, force_close=False),
            trust_env=False,  # the endpoint is the server we started, never through a proxy from the environment
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def chat(self, messages: list[dict], **params: object) -> ChatResult:
        assert self._http is not None, "use ChatClient as an async context manager"
        payload = {
            "model": self.endpoint.model,
            "messages": messages,
            **{k: v for k, v in params.items() if v is not None},
        }
        async with self._sem:
            last = "no attempt"
            for attempt in range(1, self.max_retries + 2):
                t0 = time.monotonic()
                try:
                    async with self._http.post(self._url, json=payload) as resp:
                        status, body = resp.status, await resp.read()
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:  # refused, reset, cut off, timed out
                    last = f"{type(exc).__name__}: {exc}".strip(": ")
                else:
                    if status == 200:
                        result = parse_completion(json.loads(body))
                        result.latency_s, result.attempts = time.monotonic() - t0, attempt
                        return result
                    last = f"HTTP {status}: {body[:500].decode(errors='replace')}"
                    if status not in RETRY_STATUS:
                        return ChatResult(error=last, attempts=attempt, latency_s=time.monotonic() - t0)
                if attempt <= self.max_retries:
                    # jittered exponential backoff, so retries of many requests do not arrive together
                    await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))
            return ChatResult(
                error=f"gave up after {self.max_retries + 1} attempts: {last}", attempts=self.max_retries + 1
            )
