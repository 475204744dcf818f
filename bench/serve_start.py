"""Server start time and smoke latency of the serving layer, per checkpoint.

    python -m bench.serve_start CHECKPOINT [CHECKPOINT ...] [--repeats 2] [--profile local-cpu]
                                [--device cuda] [--extra-args "--limit-mm-per-prompt {...}"]

For each checkpoint and repeat: start vLLM through quant_dag.serve (guard, /health wait), record the
startup facts, time the smoke questions (greedy, 64 tokens) one by one, and stop the server. Prints one
JSON line per start and a summary (median start, median smoke latency).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from quant_dag.checkpoint.layout import read_config
from quant_dag.profiles import load_profile
from quant_dag.serve.plan import device_flags
from quant_dag.serve.server import ServeOptions, VllmServer
from quant_dag.serve.verify import smoke, supports_thinking_switch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--profile", default="local-cpu")
    ap.add_argument("--device", default="cpu", help="cuda: add the flags the GPU needs (as the endpoint step does)")
    ap.add_argument("--extra-args", default="", help="more vLLM flags, one shell-quoted string")
    ap.add_argument("--log-dir", type=Path, help="keep the vLLM logs here (default: a temporary folder)")
    args = ap.parse_args()
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        options = ServeOptions.from_profile(load_profile(args.profile).serve, Path(tmp) / "cache")
        for ckpt in args.checkpoints:
            extra = [*options.extra_args, *shlex.split(args.extra_args)]
            extra += device_flags(args.device, read_config(ckpt), extra)
            ckpt_options = dataclasses.replace(options, extra_args=extra)
            starts, latencies = [], []
            for i in range(args.repeats):
                t0 = time.monotonic()
                log = (args.log_dir or Path(tmp)) / f"{ckpt.name}-{i}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                with VllmServer(ckpt, ckpt_options, log) as srv:
                    answers = []
                    for _ in range(3):
                        t1 = time.monotonic()
                        answers = smoke(srv, srv.name, supports_thinking_switch(ckpt))
                        latencies.append((time.monotonic() - t1) / len(answers))
                    row = {"checkpoint": str(ckpt), "repeat": i, "start_s": srv.started_s, **srv.startup}
                stop_s = time.monotonic() - t0 - srv.started_s
                starts.append(srv.started_s)
                print(json.dumps({**row, "with_smoke_and_stop_s": round(stop_s, 2)}), flush=True)
            summary.append((ckpt, statistics.median(starts), statistics.median(latencies)))
    print(f"\n{'checkpoint':60} {'start s (median)':>17} {'smoke s/answer':>15}")
    for ckpt, start, lat in summary:
        print(f"{str(ckpt)[-60:]:60} {start:17.1f} {lat:15.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
