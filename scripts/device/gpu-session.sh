#!/usr/bin/env bash
# On the GPU machine (project root, after scripts/device/unpack.sh): one device session's GPU work, in the
# background and resumable, so it outlives the device's 10-minute commands:
#
#   setsid bash scripts/device/gpu-session.sh RUN_DIR [STEP...] > /dev/null 2>&1 < /dev/null &
#   bash scripts/device/gpu-poll.sh RUN_DIR SECONDS      # waits, prints progress, copies results to $OUT
#
# Steps, in the order given (default: study q9b; a step that succeeded is skipped on a re-run, a failed one runs
# again):
#   throughput  bench/evaluator_throughput.py on a Qwen3-8B-shaped random model (the evaluator vs vllm bench serve)
#   study       `quant-dag plan` then `quant-dag run` of gpu-smoke's parts (STUDIES, default gpu-smoke-dense then
#               gpu-smoke-moe; profile $STUDY_PROFILE: Dagster, CUDA AutoRound, vLLM), gpu-smoke's summary from
#               them, and `quant-dag plan --check` on what the run recorded; the home is RUN_DIR/../qd-home.
#               STUDY_PROFILE defaults to gpu-node-eager: under gpu-node the study's servers took 200-342 s each
#               (2026-12-05) and the whole of it did not fit one device session; eager, the session's first start
#               took 210-283 s (cold Triton cache), later ones 44-100 s (2026-12-06: the study in 13 minutes)
#   q9b         a Qwen3.5-9B-shaped random model (8 of its 32 layers, vision tower included): AutoRound light
#               on CUDA (time, peak GPU memory; Q9B_CASES indexes bench/gpu_quantize.py's CASES, default 1 =
#               W4A16 with linear attention quantized, 3 = NVFP4 likewise: both measured 2026-12-05), then the
#               first quantized checkpoint's start on vLLM (profile gpu-node)
#   q9b-default (on request) AutoRound's default preset on a 4-layer 9B shape: its time per layer beside light's
#   study9b     (on request) `quant-dag run gpu-smoke-9b`: the 9B shape (random weights, 8 layers) as a model of the
#               Dagster study, built by its checkpoint step, quantized on CUDA, served and benchmarked pace only
#   pair        (on request, two GPUs of one host) `quant-dag run gpu-pair --profile gpu-pair` with the pool `gpu`
#               at 2: the 27B shape in bf16 on TP 2, two 9B-shaped variants side by side, one GPU each; then the
#               evaluator's throughput on a Qwen3-8B shape on TP 1 (one GPU), TP 2 and 2 x TP 1 (data parallel)
set -uo pipefail
RUN=${1:?RUN_DIR}; shift
STEPS=${*:-study q9b}  # throughput on request: measured 2026-12-05 (README), 11 minutes of device time
export PYTHONPATH=/root/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
# NVLink multicast stays off (the device's rule), in every process started from here
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# Not shortened by TRITON_CACHE_AUTOTUNING (vLLM 0.26 sets it already): the Gated DeltaNet kernels' JIT and
# autotuning (88-160 s of each Qwen3.5 start, 2026-12-05) land in TRITON_CACHE_DIR, which vLLM points into each
# model's own torch.compile cache when it compiles, so no compiled variant reuses another's
# Eager servers (gpu-node-eager) use this one Triton cache, so the Gated DeltaNet kernels are built and autotuned
# once per session, not per server; gpu-poll.sh brings it back as triton-cache.tgz, and a later session that copies
# it to /root/vp/ (carried beside a vLLM piece) starts warm: Triton's cache is keyed by kernel source, Triton
# version and GPU architecture, so a stale entry is never used, only missed
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/root/triton-cache}
mkdir -p "$TRITON_CACHE_DIR"
[ -f /root/vp/triton-cache.tgz ] && [ -z "$(ls -A "$TRITON_CACHE_DIR")" ] && tar -xzf /root/vp/triton-cache.tgz -C "$TRITON_CACHE_DIR"
export QUANT_DAG_HOME=${QUANT_DAG_HOME:-$(dirname "$RUN")/qd-home}
mkdir -p "$RUN" "$QUANT_DAG_HOME"
rm -f "$RUN/all.done"  # gpu-poll.sh waits for this session's end, not an earlier one's
note() { echo "$(date +%T) $*" >> "$RUN/progress"; }
for step in $STEPS; do
  [ -f "$RUN/$step.done" ] && continue
  note "start $step"
  case $step in
    throughput)
      [ -f /root/m8b/config.json ] || python3 -m bench.random_model /root/m8b > "$RUN/random_model.log" 2>&1
      python3 -m bench.evaluator_throughput /root/m8b --prompts 384 --input-len 512 --output-len 1024 \
        --concurrency 128 --rounds 2 --profile gpu-node > "$RUN/throughput.log" 2>&1
      rc=$? ;;
    study)
      # the tiny models, built on the CPU and carried (scripts/device/stage-project.sh ... HOME_DIR)
      [ -d /root/carry-home ] && cp -r --update=none /root/carry-home/. "$QUANT_DAG_HOME"/
      p=${STUDY_PROFILE:-gpu-node-eager}
      python3 -m quant_dag.cli.main plan gpu-smoke --profile "$p" > "$RUN/plan-before.txt" 2>&1
      # in parts (STUDIES, default the dense half then the MoE half), each summarized on its own, so a session
      # that ends during the second keeps the first whole; a part that succeeded is not run again
      rc=0
      for s in ${STUDIES:-gpu-smoke-dense gpu-smoke-moe}; do
        [ -f "$RUN/study-$s.done" ] && continue
        note "start study $s"
        python3 -m quant_dag.cli.main run "$s" --profile "$p" > "$RUN/study-$s.log" 2>&1
        r=$?
        note "end study $s rc=$r"
        [ "$r" -eq 0 ] && touch "$RUN/study-$s.done" || rc=$r
        python3 -m quant_dag.cli.main plan "$s" --profile "$p" --check > "$RUN/plan-after-$s.txt" 2>&1
      done
      # the whole study's summary from what the parts materialized (no server is started again)
      DAGSTER_HOME=$QUANT_DAG_HOME/dagster QUANT_DAG_PROFILE=$p python3 -m dagster asset materialize \
        -m quant_dag.definitions --select summary/gpu-smoke > "$RUN/summary.log" 2>&1 || rc=1
      python3 -m quant_dag.cli.main plan gpu-smoke --profile "$p" --check > "$RUN/plan-after.txt" 2>&1 ;;
    q9b)
      [ -f /root/q9b/config.json ] || python3 -m bench.random_model /root/q9b --shape qwen3.5-9b --layers 8 \
        > "$RUN/q9b-model.log" 2>&1
      python3 -m bench.gpu_quantize --checkpoint /root/q9b --preset light --cases "${Q9B_CASES:-1}" --nsamples 128 --seqlen 256 \
        --out /root/q9b-quantize > "$RUN/q9b-quantize.log" 2>&1
      rc=$?
      cp /root/q9b-quantize/results.json "$RUN/q9b-quantize.json" 2>/dev/null
      q=$(ls -d /root/q9b-quantize/q/*/ 2>/dev/null | head -1)
      [ -n "$q" ] && python3 -m bench.serve_start "$q" --repeats 1 --profile gpu-node --device cuda \
        --log-dir "$RUN/q9b-serve" > "$RUN/q9b-serve.log" 2>&1 ;;
    q9b-default)
      # AutoRound's default preset (200 iterations) per layer, beside light's, on 4 of the 9B shape's layers
      # (3 linear-attention, 1 full), at light's 8 x 256 tokens per iteration: the built-in calibration texts are
      # at most 845 tokens, so seqlen 2048 has no sample (the worker says so). 48 s on an H100 (2026-12-06)
      [ -f /root/q9b4/config.json ] || python3 -m bench.random_model /root/q9b4 --shape qwen3.5-9b --layers 4 \
        > "$RUN/q9b4-model.log" 2>&1
      python3 -m bench.gpu_quantize --checkpoint /root/q9b4 --preset default --cases 1 --nsamples 64 \
        --seqlen 256 --out /root/q9b4-quantize > "$RUN/q9b-default.log" 2>&1
      rc=$?
      cp /root/q9b4-quantize/results.json "$RUN/q9b-default.json" 2>/dev/null ;;
    study9b)
      p=${STUDY_PROFILE:-gpu-node-eager}
      python3 -m quant_dag.cli.main plan gpu-smoke-9b --profile "$p" > "$RUN/plan-before-9b.txt" 2>&1
      python3 -m quant_dag.cli.main run gpu-smoke-9b --profile "$p" > "$RUN/study-gpu-smoke-9b.log" 2>&1
      rc=$?
      python3 -m quant_dag.cli.main plan gpu-smoke-9b --profile "$p" --check > "$RUN/plan-after-9b.txt" 2>&1 ;;
    pair)
      python3 -m quant_dag.cli.main plan gpu-pair --profile gpu-pair > "$RUN/plan-before-pair.txt" 2>&1
      mkdir -p "$QUANT_DAG_HOME/dagster"
      DAGSTER_HOME=$QUANT_DAG_HOME/dagster python3 -m dagster instance concurrency set gpu 2 > "$RUN/pool.log" 2>&1
      python3 -m quant_dag.cli.main run gpu-pair --profile gpu-pair > "$RUN/study-gpu-pair.log" 2>&1
      rc=$?
      python3 -m quant_dag.cli.main plan gpu-pair --profile gpu-pair --check > "$RUN/plan-after-pair.txt" 2>&1
      [ -f /root/m8b/config.json ] || python3 -m bench.random_model /root/m8b > "$RUN/random_model.log" 2>&1
      # 128 requests at once per GPU, as the one-GPU measurement (2026-12-05)
      for par in "1 1 128" "2 1 256" "1 2 256"; do
        set -- $par
        python3 -m bench.evaluator_throughput /root/m8b --prompts $(( $3 * 3 )) --input-len 512 --output-len 1024 \
          --concurrency "$3" --rounds 2 --profile gpu-node --tensor-parallel "$1" --data-parallel "$2" \
          > "$RUN/throughput-tp$1-dp$2.log" 2>&1 || rc=1
      done ;;
    *) echo "unknown step $step" >> "$RUN/progress"; rc=2 ;;
  esac
  note "end $step rc=$rc"
  [ "$rc" -eq 0 ] && touch "$RUN/$step.done"
done
touch "$RUN/all.done"
