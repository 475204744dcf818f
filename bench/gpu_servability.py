"""What vLLM on a GPU does with each scheme x architecture: quantize the demo's tiny Qwen3.5 models on CUDA with
the seed's recipes, serve every checkpoint with the project's own server and verification, and record the facts.

    python -m bench.gpu_servability --checkpoints DIR --work DIR --out DIR [--gdn-prefill-backend triton]

DIR holds built checkpoints (tiny-qwen3.5, tiny-qwen3.5-moe: `quant-dag` builds them on the CPU in two minutes; the
GPU machine only serves). For each checkpoint: whether it loads, the startup facts vLLM prints (weights, KV cache,
compile and CUDA-graph time), the smoke answers, the degenerate check, perplexity and KL vs the base on the
reference text. Resumable: what is in --work is not redone (the GPU machine allows 10 minutes per command);
--budget-s stops starting servers when that much time has gone. Runs without Dagster.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from quant_dag.catalog.graph import ENDPOINT_FILE, REFERENCE_FILE, VLLM_LOG
from quant_dag.catalog.schema import Recipe
from quant_dag.checkpoint.layout import read_config, read_layout
from quant_dag.procs import ChildFailed, write_json_atomic
from quant_dag.quantize.run import plan_device, preflight, quantize
from quant_dag.serve.endpoint import serve_and_verify
from quant_dag.serve.plan import Servability
from quant_dag.serve.server import ServeOptions

CALIB = Path(__file__).resolve().parent.parent / "quant_dag" / "data" / "calibration-en.jsonl"
TEXT_ONLY = ["--limit-mm-per-prompt", '{"image": 0, "video": 0}']

# The seed's recipes, on the tiny models (light preset: the tiny models take seconds). The calibration texts are
# ~400 tokens: AutoRound drops samples shorter than seqlen (light: 2048), and with none left it stops
# ("no data has been cached").
SMALL: dict = {"nsamples": 32, "seqlen": 256, "batch_size": 8}
DENSE = {
    "w4a16": Recipe(name="w4a16", scheme="W4A16", preset="light", **SMALL, group_size=32),
    "nvfp4": Recipe(name="nvfp4", scheme="NVFP4", format="llm_compressor", preset="light", **SMALL),
    "nvfp4-keep-linear-attn": Recipe(
        name="nvfp4-keep-linear-attn",
        scheme="NVFP4",
        format="llm_compressor",
        preset="light",
        **SMALL,
        ignore_layers=("linear_attn",),
    ),
    "fp8-static": Recipe(name="fp8-static", scheme="FP8_STATIC", format="llm_compressor", preset="rtn", **SMALL),
}
MOE = {
    "w4a16-keep-shared-expert": Recipe(
        name="w4a16-keep-shared-expert",
        scheme="W4A16",
        preset="light",
        **SMALL,
        group_size=32,
        ignore_layers=("shared_expert",),
    ),
    "nvfp4-keep-linear-attn-shared-expert": Recipe(
        name="nvfp4-keep-linear-attn-shared-expert",
        scheme="NVFP4",
        format="llm_compressor",
        preset="light",
        **SMALL,
        ignore_layers=("linear_attn", "shared_expert"),
    ),
    "fp8-static": Recipe(name="fp8-static", scheme="FP8_STATIC", format="llm_compressor", preset="rtn", **SMALL),
}


def quantize_all(bases: dict[str, Path], work: Path, report: dict, quiet: bool) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for model, base in bases.items():
        model_type = str(read_config(base).get("model_type", ""))
        recipes = MOE if "moe" in model_type else DENSE
        for name, recipe in recipes.items():
            key = f"{model}/{name}"
            out = work / "q" / model / name
            row: dict = {"variant": key, "scheme": recipe.scheme, "format": recipe.format}
            if (out / "config.json").is_file():
                rows[key] = {**row, **json.loads((work / "q" / model / f"{name}.json").read_text())}
                continue
            plan = plan_device("cuda", report, recipe.resolved(), read_layout(base).total_bytes, model_type)
            try:
                res = quantize(
                    base=base,
                    output=out,
                    recipe=plan.recipe,
                    calibration=str(CALIB),
                    device="cuda",
                    workdir=work / "qwork" / model / name,
                    on_log=(lambda s: None) if quiet else print,
                    use_fla=plan.use_fla,
                )
                row.update(ok=True, quantize_s=res.wall_s, weights_bytes=res.layout.total_bytes)
            except ChildFailed as exc:
                row.update(ok=False, error="\n".join(exc.result.tail[-8:]), quantize_s=round(exc.result.wall_s, 1))
            write_json_atomic(work / "q" / model / f"{name}.json", row)
            print(json.dumps(row), flush=True)
            rows[key] = row
    return rows


def serve_one(name: str, ckpt: Path, work: Path, base_ref: Path | None, options: ServeOptions) -> dict:
    wd = work / "serve" / name.replace("/", "__")
    if (wd / ENDPOINT_FILE).is_file():
        return json.loads((wd / ENDPOINT_FILE).read_text())
    t0 = time.monotonic()
    try:
        rec = serve_and_verify(ckpt, options, wd, Servability(True, "measuring"), base_reference=base_ref)
        row = asdict(rec)
    except Exception as exc:  # noqa: BLE001 - a failure to serve is the measurement
        log = wd / "vllm.log"
        tail = log.read_text(errors="replace").splitlines()[-30:] if log.is_file() else []
        row = {"servable": False, "reason": f"{type(exc).__name__}: {exc}"[:2000], "log_tail": tail}
    row["wall_s"] = round(time.monotonic() - t0, 1)
    write_json_atomic(wd / ENDPOINT_FILE, row)
    print(json.dumps({"served": name, "ok": row.get("servable"), "start_s": row.get("start_s")}), flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--gdn-prefill-backend", choices=["auto", "flashinfer", "triton", "cutedsl"], default="auto")
    ap.add_argument("--parallel", type=int, default=3, help="servers at once (tiny models share one GPU)")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.12)
    ap.add_argument("--budget-s", type=float, default=520)
    ap.add_argument("--skip-quantize", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated checkpoint names to serve (default: all)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    t_start = time.monotonic()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    bases = {p.name: p for p in sorted(args.checkpoints.iterdir()) if (p / "config.json").is_file()}
    report = preflight(probe_fla=True, on_log=lambda s: None)
    write_json_atomic(args.work / "preflight.json", report)
    if args.skip_quantize:  # what an earlier command quantized
        quantized = {
            f"{f.parent.name}/{f.stem}": json.loads(f.read_text()) for f in sorted(args.work.glob("q/*/*.json"))
        }
    else:
        quantized = quantize_all(bases, args.work, report, args.quiet)

    extra = [*TEXT_ONLY, "--reasoning-parser", "qwen3"]
    if args.gdn_prefill_backend != "auto":
        extra += ["--gdn-prefill-backend", args.gdn_prefill_backend]
    options = ServeOptions(
        max_model_len=4096,
        gpu_memory_utilization=args.gpu_memory_utilization,
        extra_args=extra,
        startup_timeout_s=max(60.0, args.budget_s - (time.monotonic() - t_start)),
    )
    only = set(filter(None, args.only.split(",")))
    served: dict[str, dict] = {}

    def run(name: str, ckpt: Path, base_ref: Path | None) -> None:
        if only and name not in only:
            return
        if time.monotonic() - t_start > args.budget_s:
            served[name] = {"skipped": "out of this command's time budget"}
            return
        served[name] = serve_one(name, ckpt, args.work, base_ref, options)

    with ThreadPoolExecutor(args.parallel) as pool:  # bases first: the variants' KL needs their reference
        list(pool.map(lambda kv: run(f"{kv[0]}/base", kv[1], None), bases.items()))
    jobs = []
    for key, row in quantized.items():
        model = key.split("/")[0]
        if row.get("ok"):
            ref = args.work / "serve" / f"{model}__base" / REFERENCE_FILE
            jobs.append((key, args.work / "q" / key, ref))
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(lambda j: run(*j), jobs))

    results = {"preflight": report, "quantized": quantized, "served": served, "options": options.flags()}
    write_json_atomic(args.out / "results.json", results)
    with tarfile.open(args.out / "serve-logs.tar.gz", "w:gz") as tar:  # the logs are the startup-parser fixtures
        for path in sorted((args.work / "serve").glob("*/*")):
            if path.name in (VLLM_LOG, ENDPOINT_FILE):
                tar.add(path, arcname=f"{path.parent.name}/{path.name}")
    print(f"\n{'checkpoint':52} {'serves':>6} {'start s':>8} {'KL':>8}  answers / reason")
    for name, row in sorted(served.items()):
        answers = " | ".join(a.get("content", "")[:20] for a in row.get("answers", []))
        print(
            f"{name:52} {row.get('servable')!s:>6} {row.get('start_s', '-')!s:>8} {row.get('kl_vs_base', '-')!s:>8}  "
            f"{answers or str(row.get('reason', row.get('skipped', '')))[:80]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
