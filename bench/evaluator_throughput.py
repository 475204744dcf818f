"""The evaluator's throughput against `vllm bench serve`, on the same server with the same request shape.

    python -m bench.evaluator_throughput CHECKPOINT [--prompts 64] [--input-len 128] [--output-len 128]
                                         [--concurrency 8] [--rounds 2] [--profile local-cpu]

One vLLM server (quant_dag.serve, the project's profile). Each round runs, alternately, vLLM's own benchmark
client (`vllm.benchmarks.serve`, backend openai-chat, random dataset, ignore_eos) and quant_dag's evaluator
(quant_dag.evaluate.engine.evaluate, chat completions, the same prompt count, input and output lengths, ignore_eos,
the same concurrency, scoring on, records journaled). Both send the same kind of prompts: the evaluator's come
from vLLM's own random dataset (`get_samples`, exact token lengths), and every run draws new ones (its own seed),
so no run is served from the prefix cache of an earlier one. The figure is the ratio of output-token throughput,
evaluator / vllm bench (1.0: the evaluator adds no client-side cost). The evaluator's time is its whole
`evaluate()` call (planning, scoring and journaling the last answers included); `vllm bench serve` reports its
request phase only. Prints one JSON line per run and the ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quant_dag.evaluate.client import Endpoint
from quant_dag.evaluate.engine import Provenance, SuitePlan, evaluate
from quant_dag.evaluate.types import Sample
from quant_dag.profiles import load_profile
from quant_dag.serve.server import ServeOptions, VllmServer

VLLM_PROMPTS = """
import json, sys
from vllm.benchmarks.datasets import get_samples
from vllm.benchmarks.serve import add_cli_args
from vllm.tokenizers import get_tokenizer
from vllm.utils.argparse_utils import FlexibleArgumentParser
p = FlexibleArgumentParser(); add_cli_args(p)
a = p.parse_args(sys.argv[1:])
tok = get_tokenizer(a.tokenizer, tokenizer_mode=a.tokenizer_mode, trust_remote_code=a.trust_remote_code)
print("@@prompts " + json.dumps([r.prompt for r in get_samples(a, tok)]))
"""
VLLM_BENCH = """
import json, sys
from vllm.benchmarks.serve import add_cli_args, main
from vllm.utils.argparse_utils import FlexibleArgumentParser
p = FlexibleArgumentParser(); add_cli_args(p)
r = main(p.parse_args(sys.argv[1:]))
print("@@result " + json.dumps({k: v for k, v in r.items() if isinstance(v, (int, float))}))
"""


def bench_argv(srv: VllmServer, checkpoint: Path, args: argparse.Namespace, seed: int) -> list[str]:
    return [
        "--backend",
        "openai-chat",
        "--endpoint",
        "/v1/chat/completions",
        "--base-url",
        srv.base_url,
        "--model",
        srv.name,
        "--tokenizer",
        str(checkpoint),
        "--dataset-name",
        "random",
        "--random-input-len",
        str(args.input_len),
        "--random-output-len",
        str(args.output_len),
        "--num-prompts",
        str(args.prompts),
        "--max-concurrency",
        str(args.concurrency),
        "--ignore-eos",
        "--seed",
        str(seed),
        "--disable-tqdm",
    ]


def vllm_random_prompts(argv: list[str]) -> list[str]:
    """The prompts `vllm bench serve` would send for these arguments: its random dataset, its tokenizer."""
    proc = subprocess.run([sys.executable, "-c", VLLM_PROMPTS, *argv], capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@prompts ")), None)
    if line is None:
        raise RuntimeError(f"vLLM's random dataset failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(line.removeprefix("@@prompts "))


def run_vllm_bench(srv: VllmServer, argv: list[str]) -> dict:
    env = {**os.environ, "OPENAI_API_KEY": srv.api_key}
    proc = subprocess.run([sys.executable, "-c", VLLM_BENCH, *argv], capture_output=True, text=True, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@result ")), None)
    if line is None:
        raise RuntimeError(f"vllm bench serve failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    r = json.loads(line.removeprefix("@@result "))
    return {
        "client": "vllm bench serve",
        "output_tok_s": r["output_throughput"],
        "req_s": r["request_throughput"],
        "completed": r["completed"],
        "wall_s": r["duration"],
        "output_tokens": r["total_output_tokens"],
        "input_tokens": r["total_input_tokens"],
    }


def run_evaluator(srv: VllmServer, prompts: list[str], args: argparse.Namespace, tmp: Path, i: int) -> dict:
    samples = [Sample(id=f"p{j}", prompt=p, reference="0", kind="math") for j, p in enumerate(prompts)]
    gen = {"temperature": 0.0, "max_tokens": args.output_len, "ignore_eos": True}
    plan = SuitePlan("throughput", "arithmetic", samples, "random", {"gen": gen, "round": i}, gen)
    prov = Provenance("bench", "bench", "bench", str(srv.startup.get("vllm_version")), f"round{i}")
    t0 = time.monotonic()
    out = evaluate(
        Endpoint(srv.base_url, srv.api_key, srv.name),
        plan,
        prov,
        tmp / f"journal-{i}.jsonl",
        thinking_switch=False,
        concurrency=args.concurrency,
    )
    wall = time.monotonic() - t0
    tokens = sum(r["completion_tokens"] or 0 for r in out.records)
    errors = sum(1 for r in out.records if r["error"])
    return {
        "client": "quant_dag evaluator",
        "output_tok_s": tokens / wall,
        "req_s": len(out.records) / wall,
        "completed": len(out.records) - errors,
        "wall_s": wall,
        "output_tokens": tokens,
        "input_tokens": sum(r["prompt_tokens"] or 0 for r in out.records),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", default="local-cpu")
    # TP 2 against 2 replicas of TP 1 on the same GPUs: the planner's choice for a model that fits one GPU
    ap.add_argument("--tensor-parallel", type=int, default=None, help="vLLM's tensor_parallel_size (default: profile)")
    ap.add_argument("--data-parallel", type=int, default=None, help="vLLM's data_parallel_size (default: profile)")
    args = ap.parse_args()
    rows: dict[str, list[float]] = {"vllm bench serve": [], "quant_dag evaluator": []}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        options = ServeOptions.from_profile(load_profile(args.profile).serve, tmp / "cache")
        parallel = {"tensor_parallel_size": args.tensor_parallel, "data_parallel_size": args.data_parallel}
        options = dataclasses.replace(options, **{k: v for k, v in parallel.items() if v is not None})
        with VllmServer(args.checkpoint, options, tmp / "vllm.log") as srv:
            warm = argparse.Namespace(**{**vars(args), "prompts": 8})
            run_vllm_bench(srv, bench_argv(srv, args.checkpoint, warm, args.seed + 1000))  # warm-up
            for i in range(args.rounds):
                # a seed per run: new prompts each time, none served from an earlier run's prefix cache
                ours_argv = bench_argv(srv, args.checkpoint, args, args.seed + 2 * i + 1)
                prompts = vllm_random_prompts(ours_argv)
                for result in (
                    run_vllm_bench(srv, bench_argv(srv, args.checkpoint, args, args.seed + 2 * i)),
                    run_evaluator(srv, prompts, args, tmp, i),
                ):
                    print(json.dumps({"round": i, **result}), flush=True)
                    rows[result["client"]].append(result["output_tok_s"])
    vllm, ours = statistics.median(rows["vllm bench serve"]), statistics.median(rows["quant_dag evaluator"])
    print(
        f"\noutput tok/s (median of {args.rounds}): vllm bench serve {vllm:.1f}, quant_dag evaluator {ours:.1f}; "
        f"ratio {ours / vllm:.3f}  ({args.prompts} prompts, {args.input_len} in / {args.output_len} out, "
        f"concurrency {args.concurrency}, TP {options.tensor_parallel_size} x DP {options.data_parallel_size})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
