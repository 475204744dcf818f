"""A random-weight model in a real model's shape, built on the GPU in seconds, for serving benchmarks where only the
shape matters (throughput, memory, start time); its answers are noise.

    python -m bench.random_model DEST [--shape qwen3-8b|qwen3.5-9b|qwen3.5-27b] [--layers N] [--device cuda]

The shapes are quant_dag.checkpoint.random_shape's, which the catalog's `random` source builds too (on the CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from quant_dag.checkpoint.random_shape import SHAPES, build


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--shape", choices=SHAPES, default="qwen3-8b")
    ap.add_argument("--layers", type=int)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    print(json.dumps(build(args.dest, args.shape, args.layers, args.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
