"""Runs the evaluator on a fixed plan in its own process, so a test can kill it mid-run (see test_evaluate)."""

from __future__ import annotations

import sys
from pathlib import Path

from quant_dag.evaluate.client import Endpoint
from quant_dag.evaluate.engine import Provenance, SuitePlan, evaluate
from quant_dag.evaluate.types import Sample


def make_plan(n: int, repeats: int = 2, temperature: float = 0.7, modes: tuple[bool, ...] = (True, False)) -> SuitePlan:
    samples = [
        Sample(id=f"s{i:03d}", prompt=f"item {i}: {i} + {i} = {2 * i}", reference=str(2 * i), kind="math")
        for i in range(n)
    ]
    generation = {"temperature": temperature, "top_p": 0.95, "top_k": 20, "max_tokens": 64}
    return SuitePlan(
        benchmark="toy",
        task="arithmetic",
        samples=samples,
        dataset_revision="toy-v1",
        definition={"task": "arithmetic", "generation": generation},
        generation=generation,
        thinking=modes,
        repeats=repeats,
        seed=7,
    )


PROV = Provenance(model="m", variant="v", checkpoint_id="recipe:abc", vllm_version="0.0-test", run_id="r1")

if __name__ == "__main__":
    journal, base_url, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    out = evaluate(Endpoint(base_url, "k", "model"), make_plan(n), PROV, journal, thinking_switch=True, concurrency=4)
    print(f"sent={out.sent} reused={out.reused} records={len(out.records)}")
