"""The Dagster layer: one module per stage of the graph, each a thin `definitions(...)` over an engine.

checkpoints -> quantized -> served (endpoints and benchmarks) -> summary, with runtime (the observed vLLM
build), automation and jobs; quant_dag.definitions merges them. Step functions keep real annotations (no
`from __future__ import annotations`): Dagster finds their resource by its type.
"""
