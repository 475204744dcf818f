"""Benchmark evaluation: datasets, prompts, an async client, per-sample records, scorers and a sandbox."""
