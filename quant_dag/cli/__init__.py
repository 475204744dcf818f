"""`quant-dag`, the command line: one module per command (see `main.py` for the list), as in vLLM's
`vllm/entrypoints/cli/`. The console script is `quant_dag.cli.main:main` (pyproject.toml); `python -m
quant_dag.cli` runs the same. Nothing is imported here, so `python -m quant_dag.cli.<command>` runs a module
not imported before, and `quant_dag.cli.main` is always the module, never shadowed by a function."""
