"""`quant-dag`, the command line: one module per command (see `main.py` for the list), as in vLLM's
`vllm/entrypoints/cli/`. `main` is the console script (`quant_dag.cli:main` in pyproject.toml)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run `quant-dag` with these arguments (default: the command line's); return the exit status."""
    # imported here, not at the top: `python -m quant_dag.cli.<module>` then runs a module not imported before
    from quant_dag.cli.main import main as run

    return run(argv)


__all__ = ["main"]
