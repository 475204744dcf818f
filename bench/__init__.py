"""Benchmarks of the tool itself, run from the repository root as modules: `python -m bench.<name>` (README,
"Benchmarks of the tool itself")."""
