"""The benchmark tasks by name: the one list of them.

The catalog accepts a suite's `task` only from this list. The evaluator attaches to each name its dataset schema,
default source, prompt and grader (quant_dag.evaluate.datasets.TASKS) and checks, when imported, that it covers
exactly these names in this order.
"""

from __future__ import annotations

TASK_NAMES: tuple[str, ...] = (
    "mmlu_pro",
    "gpqa",
    "aime",
    "math500",
    "livecodebench",
    "humaneval",
    "arithmetic",  # generated demo suite (quant_dag.catalog.demo_suites)
    "basic_mc",  # generated demo suite (quant_dag.catalog.demo_suites)
)
