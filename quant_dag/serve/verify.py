"""Is a served model sane? Smoke answers with thinking on and off, degenerate-output detection, and fidelity
against the base model from prompt logprobs (perplexity and a top-k KL estimate) on a fixed reference text.

Plain functions over an OpenAI-compatible server (anything with `.request(path, payload)`), testable without vLLM.
"""

from __future__ import annotations

import json
import math
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from quant_dag.home import ENGLISH_TEXT

SMOKE_QUESTIONS = (
    "What is the capital of France? Answer in one word.",
    "How many legs does a spider have? Answer with a number.",
)
TOP_K = 20  # vLLM's default max_logprobs


class Server(Protocol):
    def request(self, path: str, payload: dict | None = None, timeout: float = 300) -> dict: ...


def reference_text(chars: int = 1500) -> str:
    """A fixed English text the fidelity measure scores (the last calibration sample, cut at a word)."""
    last = json.loads(ENGLISH_TEXT.read_text().splitlines()[-1])["text"]
    return last[:chars].rsplit(" ", 1)[0]


def degenerate(text: str) -> str | None:
    """Why an answer looks degenerate ("!!!!", one word repeated, a loop), or None."""
    t = text.strip()
    if not t:
        return "empty answer"
    if len(t) >= 8 and len(set(t)) <= 2:
        return f"one character repeated: {t[:24]!r}"
    words = t.split()
    if len(words) >= 8:
        word, n = Counter(words).most_common(1)[0]
        if n / len(words) > 0.5:
            return f"{word!r} is {n} of {len(words)} words"
    if len(t) >= 200 and len(zlib.compress(t.encode())) / len(t.encode()) < 0.12:
        return "the answer repeats itself (compresses below 12%)"
    return None


def reasoning_of(message: dict) -> tuple[str, str | None]:
    """The reasoning text and the field that carried it: vLLM renamed `reasoning_content` to `reasoning`."""
    for field in ("reasoning", "reasoning_content"):
        value = message.get(field)
        if isinstance(value, str) and value:
            return value, field
    return "", None


def supports_thinking_switch(checkpoint: Path) -> bool:
    """Whether the chat template reads `enable_thinking` (Qwen3-style); only then is thinking on/off tested."""
    texts = [p.read_text(errors="replace") for p in (checkpoint / "chat_template.jinja",) if p.is_file()]
    cfg = checkpoint / "tokenizer_config.json"
    if cfg.is_file():
        texts.append(str(json.loads(cfg.read_text()).get("chat_template", "")))
    return any("enable_thinking" in t for t in texts)


@dataclass
class SmokeAnswer:
    question: str
    thinking: bool | None  # None: the template has no switch
    content: str
    reasoning: str
    reasoning_field: str | None
    finish_reason: str
    completion_tokens: int
    degenerate: str | None


def smoke(server: Server, model: str, thinking_switch: bool, max_tokens: int = 64) -> list[SmokeAnswer]:
    modes: tuple[bool | None, ...] = (False, True) if thinking_switch else (None,)
    out = []
    for question in SMOKE_QUESTIONS:
        for thinking in modes:
            payload: dict = {
                "model": model,
                "messages": [{"role": "user", "content": question}],
                "max_tokens": max_tokens,
                "temperature": 0,
            }
            if thinking is not None:
                payload["chat_template_kwargs"] = {"enable_thinking": thinking}
            resp = server.request("/v1/chat/completions", payload)
            choice = resp["choices"][0]
            reasoning, field = reasoning_of(choice["message"])
            content = choice["message"].get("content") or ""
            out.append(
                SmokeAnswer(
                    question,
                    thinking,
                    content,
                    reasoning,
                    field,
                    choice.get("finish_reason", ""),
                    int((resp.get("usage") or {}).get("completion_tokens", 0)),
                    degenerate(content + reasoning),
                )
            )
    return out


@dataclass
class PromptLogprobs:
    """Per position of the reference text: the actual token's logprob and the top-k alternatives."""

    actual: list[float]
    top: list[dict[str, float]]

    def to_json(self) -> dict:
        return {"actual": self.actual, "top": self.top}

    @classmethod
    def from_json(cls, data: dict) -> "PromptLogprobs":
        return cls(data["actual"], data["top"])


def prompt_logprobs(server: Server, model: str, text: str, k: int = TOP_K) -> PromptLogprobs:
    resp = server.request(
        "/v1/completions",
        {
            "model": model,
            "prompt": text,
            "max_tokens": 1,
            "temperature": 0,
            "prompt_logprobs": k,
            "return_token_ids": True,
        },
    )
    ids = resp["choices"][0].get("prompt_token_ids") or resp.get("prompt_token_ids")
    entries = resp["choices"][0].get("prompt_logprobs") or resp.get("prompt_logprobs")
    if ids is None or entries is None:
        raise ValueError("the server returned no prompt_logprobs / prompt_token_ids: not a vLLM OpenAI server?")
    actual, top = [], []
    for tok, entry in zip(ids[1:], entries[1:]):  # the first token has no context
        actual.append(float(entry[str(tok)]["logprob"]))
        ranked = sorted(entry.items(), key=lambda kv: kv[1].get("rank", 0))
        top.append({t: float(v["logprob"]) for t, v in ranked if v.get("rank", k + 1) <= k})
    return PromptLogprobs(actual, top)


def perplexity(lp: PromptLogprobs) -> float:
    return math.exp(-sum(lp.actual) / len(lp.actual))


def topk_kl(base: PromptLogprobs, other: PromptLogprobs) -> float:
    """Mean KL(base || other) per token over base's top-k plus one bucket for the rest.

    A token missing from `other`'s top-k gets `other`'s smallest listed probability (an upper bound),
    so the estimate errs towards zero; it separates a faithful variant from a broken one, which is its job.
    """
    if len(base.top) != len(other.top):
        raise ValueError(f"different tokenizations: {len(base.top)} vs {len(other.top)} positions")
    total = 0.0
    for p_top, q_top in zip(base.top, other.top):
        floor = min(q_top.values()) if q_top else -30.0
        p = [math.exp(v) for v in p_top.values()]
        q = [math.exp(q_top.get(t, floor)) for t in p_top]
        p_tail, q_tail = max(1 - sum(p), 1e-9), max(1 - sum(q), 1e-9)
        total += sum(pi * math.log(pi / max(qi, 1e-12)) for pi, qi in zip(p, q) if pi > 0)
        total += p_tail * math.log(p_tail / q_tail)
    return total / len(base.top)
