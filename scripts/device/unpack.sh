#!/usr/bin/env bash
# On the GPU machine (in the project's root), once per warm machine: unpack vLLM's pieces (copied to /root/vp by
# one call each, see ../shared/device/stage-vllm.sh) and the project's wheels (scripts/device/stage-project.sh,
# carried as .device-carry, and polars, copied to /root/vp/wheels by a call of its own) into /root/site. Then: export PYTHONPATH=/root/site:$PWD
set -euo pipefail
SITE=${SITE:-/root/site}
if [ ! -f "$SITE/.unpacked" ]; then
  mkdir -p "$SITE"
  t0=$(date +%s)
  # without vLLM's pieces (a quantize-only session) the project's wheels alone
  if compgen -G "/root/vp/piece.*" > /dev/null; then cat /root/vp/piece.* | tar -xz -C "$SITE"; fi
  python3 -m pip install -q --no-deps --no-index --no-compile --target "$SITE" .device-carry/wheels/*.whl \
    $(ls /root/vp/wheels/*.whl 2>/dev/null) 2>&1 | grep -v WARNING || true
  touch "$SITE/.unpacked"
  echo "unpacked into $SITE in $(( $(date +%s) - t0 )) s"
fi
# The tiny checkpoints built on the CPU: copied out now, because a carried folder is gone from the working tree
# once a later call does not name it in `carry` (seen: the study step then found no checkpoints and rebuilt them)
if [ -d .device-carry/home ] && [ ! -d /root/carry-home ]; then
  cp -r .device-carry/home /root/carry-home
fi
