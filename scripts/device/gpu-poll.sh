#!/usr/bin/env bash
# On the GPU machine: wait up to SECONDS for gpu-session.sh to finish (less than the device's 10-minute command
# limit), print where it stands, and copy what it has so far to $OUT: the run folder and the project home
# without weights (vLLM logs, endpoint.json, records, summaries) and the Dagster instance, as tarballs.
#   bash scripts/device/gpu-poll.sh RUN_DIR SECONDS
RUN=${1:?RUN_DIR}; WAIT=${2:-500}
HOME_DIR=${QUANT_DAG_HOME:-$(dirname "$RUN")/qd-home}
t0=$(date +%s)
while [ ! -f "$RUN/all.done" ] && [ $(( $(date +%s) - t0 )) -lt "$WAIT" ]; do sleep 5; done
cat "$RUN/progress" 2>/dev/null
# Dagster's DEBUG events would fill the tail: the steps' own lines and failures
for f in "$RUN"/*.log; do [ -f "$f" ] && { echo "== $f"; grep -v ' - DEBUG - ' "$f" | tail -n 6 | cut -c1-400; }; done
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader 2>/dev/null
if [ -n "${OUT:-}" ]; then
  tar -czf "$OUT/run.tgz" -C "$(dirname "$RUN")" "$(basename "$RUN")" --exclude='*.safetensors' 2>/dev/null
  # the home without weights or tokenizers (a file back is at most 16 MiB): logs, configs, records, summaries;
  # the Dagster instance on its own
  if [ -d "$HOME_DIR" ]; then
    # vLLM's compile caches (cache/) made it 47 MB (2026-12-05); a larger one comes back in 15 MiB parts
    (cd "$(dirname "$HOME_DIR")" && find "$(basename "$HOME_DIR")" -type f -size -4M ! -path '*/dagster/*' \
      ! -path '*/cache/*' ! -name '*.safetensors' ! -name 'tokenizer*' ! -name '*.bin' ! -name '*.pt' \
      | tar -czf "$OUT/home.tgz" -T -)
    if [ "$(stat -c %s "$OUT/home.tgz")" -gt 15728640 ]; then
      (cd "$OUT" && split -b 15m home.tgz home.tgz.part- && rm home.tgz)  # cat home.tgz.part-* | tar -xz
    fi
    tar -czf "$OUT/dagster.tgz" -C "$(dirname "$HOME_DIR")" "$(basename "$HOME_DIR")/dagster" 2>/dev/null
  fi
  # the session's Triton cache (gpu-session.sh), for the next session to carry: 20 MB compressed after gpu-smoke
  # and the 9B shape (2026-12-06), so in 15 MiB parts (cat triton-cache.tgz.part-* > triton-cache.tgz)
  TC=${TRITON_CACHE_DIR:-/root/triton-cache}
  if [ -d "$TC" ]; then
    tar -czf "$OUT/triton-cache.tgz" -C "$TC" . 2>/dev/null
    (cd "$OUT" && split -b 15m triton-cache.tgz triton-cache.tgz.part- && rm triton-cache.tgz)
  fi
  ls -la "$OUT"
fi
[ -f "$RUN/all.done" ]
