"""Quantize tiny Qwen3.5 models (dense and MoE, hybrid linear attention) with the project's own engine, and time it.

    python -m bench.gpu_quantize --device cuda --out DIR     # on a GPU machine
    python -m bench.gpu_quantize --device cpu  --out DIR     # the same runs on the CPU, for comparison

Runs without Dagster: preflight (GPUs, torch / triton / FLA versions and whether they work together),
a GPU lease, the device plan, the AutoRound worker, then the layout report and both checks. Prints one
JSON line per run and a table; writes DIR/results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from quant_dag import gpu
from quant_dag.catalog.schema import Recipe
from quant_dag.checkpoint.checks import Expectation, check_config_agrees, check_size
from quant_dag.checkpoint.layout import read_config, read_layout
from quant_dag.checkpoint.store import ensure_checkpoint
from quant_dag.procs import ChildFailed
from quant_dag.quantize.run import plan_device, preflight, quantize
from quant_dag.quantize.worker import INFO_FILE

CALIB = Path(__file__).resolve().parent.parent / "quant_dag" / "data" / "calibration-en.jsonl"
CASES = [
    # (scheme, format, keep linear attention in 16-bit?)
    ("W4A16", "auto_round", True),
    ("W4A16", "auto_round", False),
    ("NVFP4", "llm_compressor", True),
    ("NVFP4", "llm_compressor", False),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--iters", type=int, default=None, help="AutoRound iterations (default: the preset's)")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--models", default="tiny-qwen3.5,tiny-qwen3.5-moe")
    ap.add_argument("--cases", default="", help="comma-separated indexes into CASES (default: all)")
    ap.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="an existing checkpoint to quantize instead of the demo models (e.g. bench.random_model's)",
    )
    ap.add_argument("--preset", default="light", help="AutoRound preset: rtn, light, default, ...")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    quiet = lambda line: None  # noqa: E731

    on_gpu = args.device != "cpu"
    results = []
    with gpu.lease(1, args.out / "locks") if on_gpu else contextlib.nullcontext() as held:
        env = held.env() if held else {}
        report = preflight(probe_fla=on_gpu, env=env, on_log=quiet)
        print(json.dumps({"preflight": report, "lease": held.describe() if held else None}), flush=True)
        bases = [(c.name, c) for c in args.checkpoint] or [(m, None) for m in args.models.split(",")]
        for model, given in bases:
            t0 = time.monotonic()
            base = given or ensure_checkpoint({"demo": model}, args.out / "ckpt" / model, on_log=quiet, env=env)[0]
            build_s = time.monotonic() - t0
            base_layout = read_layout(base)
            model_type = read_config(base).get("model_type", "")
            chosen = [CASES[int(i)] for i in args.cases.split(",")] if args.cases else CASES
            for scheme, fmt, keep in chosen:
                ignore = ("linear_attn",) if keep else ()
                recipe = Recipe(
                    name="bench",
                    scheme=scheme,
                    format=fmt,
                    preset=args.preset,
                    iters=args.iters,
                    nsamples=args.nsamples,
                    seqlen=args.seqlen,
                    batch_size=8,
                    ignore_layers=ignore,
                    torch_compile=True,  # as the seed study asked; the device plan must turn it off for Qwen3.5
                )
                plan = plan_device(args.device, report, recipe.resolved(), base_layout.total_bytes, model_type)
                name = f"{model}/{scheme}-{fmt}-{'keep' if keep else 'quant'}-linear-attn-{args.preset}"
                row: dict = {"run": name, "device": args.device, "build_model_s": round(build_s, 1), "plan": plan.notes}
                try:
                    res = quantize(
                        base=base,
                        output=args.out / "q" / name.replace("/", "__"),
                        recipe=plan.recipe,
                        calibration=str(CALIB),
                        device=args.device,
                        workdir=args.out / "work" / name.replace("/", "__"),
                        on_log=quiet,
                        env=env,
                        use_fla=plan.use_fla,
                    )
                except ChildFailed as exc:
                    row.update(ok=False, error="\n".join(exc.result.tail[-6:]), wall_s=round(exc.result.wall_s, 1))
                    print(json.dumps(row), flush=True)
                    results.append(row)
                    continue
                expect = Expectation(scheme, recipe.resolved()["group_size"], ignore)  # type: ignore[arg-type]
                agree = check_config_agrees(res.path, expect, res.layout)
                size = check_size(res.path, expect, base_layout, res.layout)
                row.update(
                    ok=True,
                    wall_s=res.wall_s,
                    peak_rss_mib=res.peak_rss_bytes // 2**20,
                    **{
                        k: v
                        for k, v in json.loads((res.path / INFO_FILE).read_text()).items()
                        if k in ("quantize_seconds", "peak_gpu_allocated_gib", "peak_gpu_reserved_gib")
                    },
                    weights_bytes=res.layout.total_bytes,
                    ratio_vs_base=round(res.layout.total_bytes / base_layout.total_bytes, 3),
                    families_16bit=res.layout.summary()["families_16bit"],
                    config_check=agree.passed,
                    config_summary=agree.summary,
                    config_problems=agree.problems[:5],
                    size_check=size.passed,
                    size_summary=size.summary,
                )
                print(json.dumps(row), flush=True)
                results.append(row)
    (args.out / "results.json").write_text(json.dumps({"preflight": report, "runs": results}, indent=2))
    print(f"\n{'run':64} {'ok':>3} {'wall s':>7} {'ratio':>6} checks")
    for r in results:
        checks = f"{r.get('config_check')}/{r.get('size_check')}" if r["ok"] else r["error"].splitlines()[-1][:60]
        print(f"{r['run']:64} {str(r['ok']):>3} {r['wall_s']:>7} {r.get('ratio_vs_base', '-'):>6} {checks}")
    return 0 if all(r["ok"] for r in results) else 1  # a session script must see a failed run as a failure


if __name__ == "__main__":
    sys.exit(main())
