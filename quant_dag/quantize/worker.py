"""Run one AutoRound quantization (child process: imports torch and AutoRound).

    python -m quant_dag.quantize.worker SPEC.json

SPEC holds the base checkpoint path, the output folder and the resolved recipe. The quantized
checkpoint is written atomically to the output folder; progress arrives as `@@quant-dag` events.
One model per process: AutoRound leaves state behind that corrupts a second model (FACTS.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from quant_dag.checkpoint.checks import declare_kept_16bit
from quant_dag.procs import atomic_dir, cpu_work, emit, hide_modules
from quant_dag.runtime.version import torchvision_works

INFO_FILE = (
    "quant_dag_quantize.json"  # in the quantized checkpoint: AutoRound's version and kwargs, seconds, peak GPU memory
)


def autoround_kwargs(recipe: dict, base: str, calibration: str, device: str) -> dict:
    """Map a resolved catalog recipe onto AutoRound's constructor arguments."""
    kwargs: dict = dict(
        model=base,
        scheme=recipe["scheme"],
        iters=recipe["iters"],
        nsamples=recipe["nsamples"],
        seqlen=recipe["seqlen"],
        batch_size=recipe["batch_size"],
        dataset=calibration,
        enable_torch_compile=recipe["torch_compile"],
        low_gpu_mem_usage=recipe["low_gpu_mem_usage"],
        seed=recipe["seed"],
        disable_opt_rtn=recipe["disable_opt_rtn"],
        group_size=recipe["group_size"],
        device_map=device,
        # Plain RTN would auto-route to AutoRound's model-free path, whose layout differs (it packs
        # Linear layers with 2 outputs that the regular path keeps 16-bit): one code path for every preset.
        disable_model_free=True,
    )
    if recipe.get("lr") is not None:
        kwargs["lr"] = recipe["lr"]
    if recipe.get("sym") is not None:
        kwargs["sym"] = recipe["sym"]
    if recipe["ignore_layers"]:
        kwargs["ignore_layers"] = ",".join(recipe["ignore_layers"])
    return kwargs


def preloaded_vlm(base: str) -> tuple[object, object] | None:
    """(model, tokenizer) for a vision-language checkpoint that AutoRound cannot load by path here, else None.

    Given a path, AutoRound builds the checkpoint's AutoProcessor, and Qwen3-VL's video processor (which
    Qwen3.5 uses) needs torchvision, which PyPI has for no CPU torch. Given the model object, the tokenizer and
    the tokenizer as its processor, AutoRound quantizes the same blocks (text only) and the processor files are
    copied from the base afterwards.
    """
    if not (Path(base) / "preprocessor_config.json").is_file() or torchvision_works():
        return None
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    return AutoModelForImageTextToText.from_pretrained(base, dtype="auto"), AutoTokenizer.from_pretrained(base)


def short_calibration(base: str, calibration: str, seqlen: int) -> str | None:
    """Why a local .jsonl calibration set gives AutoRound no sample (it drops those under `seqlen` tokens), or None."""
    path = Path(calibration)
    if path.suffix != ".jsonl" or not path.is_file():
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    lengths = [
        len(tok(json.loads(line)["text"])["input_ids"]) for line in path.read_text().splitlines() if line.strip()
    ]
    if not lengths or max(lengths) >= seqlen:
        return None
    return (
        f"calibration {path}: none of its {len(lengths)} samples has the recipe's seqlen={seqlen} tokens (the longest "
        f"has {max(lengths)}) and AutoRound drops shorter samples; set the recipe's seqlen to at most {max(lengths)}"
    )


def usable_calibration(base: str, calibration: str, seqlen: int) -> int | None:
    """How many samples of a local .jsonl calibration set AutoRound keeps, or None for any other dataset.

    AutoRound 0.16.1's rule (calib_dataset.get_local_dataset and filter_func): each text's trailing whitespace
    stripped, tokenized truncated to `seqlen`; texts under `seqlen` tokens are dropped, and so are those whose last
    token fills more than half the window."""
    path = Path(calibration)
    if path.suffix != ".jsonl" or not path.is_file():
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    count = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        ids = tok(json.loads(line)["text"].rstrip(), truncation=True, max_length=seqlen)["input_ids"]
        count += len(ids) >= seqlen and not (seqlen > 2 and ids.count(ids[-1]) > seqlen // 2)
    return count


def full_batches(nsamples: int, batch_size: int, usable: int | None) -> tuple[int, int]:
    """(nsamples, batch_size) such that every calibration batch AutoRound forms is full.

    AutoRound 0.16.1 caches `position_embeddings` once per batch and, in a block's reference forward, gives a last
    partial batch the first batch's; Qwen3.5's rotary embeddings carry the batch dimension, so 68 usable samples
    in batches of 8 (8 x 8 + 4) failed at the first full-attention layer (seen on the H100: "The size of tensor a
    (4) must match the size of tensor b (8)" in apply_rotary_pos_emb; reproduced on the CPU with 12 samples)."""
    n = min(nsamples, usable) if usable is not None else nsamples
    if n <= 0:
        return nsamples, batch_size  # nothing usable: AutoRound's own error, explained by short_calibration
    if n < batch_size:
        return n, n  # one batch of all of them
    return n - n % batch_size, batch_size


PROCESSOR_FILES = (
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
    "chat_template.jinja",
)
OBJECTS = ("model", "tokenizer", "processor")  # kwargs that may hold loaded objects: not recorded


class _ProgressHandler(logging.Handler):
    """Turns AutoRound's milestones (calibration cached, each block tuned, saved) into progress events."""

    MILESTONES = ("caching done", "loss iter", "quantization tuning time", "Summary:", "saved to")

    def __init__(self) -> None:
        super().__init__()
        self.blocks = 0
        self.t0 = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:  # noqa: A003 - logging API
        msg = record.getMessage()
        if not any(m in msg for m in self.MILESTONES):
            return
        if "loss iter" in msg:  # one line per tuned decoder block
            self.blocks += 1
        emit("progress", blocks_done=self.blocks, elapsed_s=round(time.monotonic() - self.t0, 1), message=msg[:200])


def _peak_gpu_memory() -> dict:
    """Peak GPU memory of this process (allocated by tensors, reserved by the caching allocator), when on CUDA."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    n = torch.cuda.device_count()
    return {
        "peak_gpu_allocated_gib": round(max(torch.cuda.max_memory_allocated(i) for i in range(n)) / 2**30, 2),
        "peak_gpu_reserved_gib": round(max(torch.cuda.max_memory_reserved(i) for i in range(n)) / 2**30, 2),
    }


def quantize(spec: dict) -> dict:
    recipe = spec["recipe"]
    out = Path(spec["output"])
    if not spec.get("use_fla", True):  # before transformers is imported
        hide_modules("fla")
    from auto_round import AutoRound  # heavy import, child only
    from auto_round import __version__ as ar_version

    logging.getLogger("autoround").addHandler(_ProgressHandler())
    kwargs = autoround_kwargs(recipe, spec["base"], spec["calibration"], spec.get("device", "cpu"))
    try:
        usable = usable_calibration(spec["base"], spec["calibration"], int(recipe["seqlen"]))
    except Exception:  # noqa: BLE001 - counting must never be what stops a build; AutoRound reports its own errors
        usable = None
    nsamples, batch_size = full_batches(int(recipe["nsamples"]), int(recipe["batch_size"]), usable)
    if (nsamples, batch_size) != (kwargs["nsamples"], kwargs["batch_size"]):
        emit("progress", step="full calibration batches", usable=usable, nsamples=nsamples, batch_size=batch_size)
        kwargs.update(nsamples=nsamples, batch_size=batch_size)
    emit("progress", step="start", autoround=ar_version, kwargs={k: v for k, v in kwargs.items() if k not in OBJECTS})
    loaded = preloaded_vlm(spec["base"])
    if loaded is not None:
        emit("progress", step="preloaded", reason="vision-language checkpoint, no torchvision: model passed as object")
        kwargs.update(model=loaded[0], tokenizer=loaded[1], processor=loaded[1])
    on_cpu = spec.get("device", "cpu") == "cpu"
    lock = cpu_work(lambda: emit("progress", step="waiting for the CPU lock")) if on_cpu else contextlib.nullcontext()
    with lock, atomic_dir(out) as tmp:
        t0 = time.monotonic()  # quantize_seconds: the work, not the wait
        work = tmp / "autoround-out"
        try:
            ar = AutoRound(**kwargs)
            ar.quantize_and_save(str(work), format=recipe["format"])
        except (Exception, SystemExit) as exc:  # AutoRound's VLM path calls exit(-1) when calibration is empty
            try:
                short = short_calibration(spec["base"], spec["calibration"], int(recipe["seqlen"]))
            except Exception:  # noqa: BLE001 - explaining must never hide AutoRound's own error
                short = None
            if short:  # AutoRound's own words for it ("no data has been cached") name neither file nor field
                raise RuntimeError(short) from exc
            raise
        # AutoRound writes into a subfolder named after the model and scheme (e.g. <model>-w4g128)
        configs = sorted(work.rglob("config.json"))
        if not configs:
            raise RuntimeError(f"AutoRound wrote no config.json under {work}")
        produced = configs[0].parent
        for item in produced.iterdir():
            shutil.move(str(item), tmp / item.name)
        shutil.rmtree(work)
        for name in PROCESSOR_FILES:  # what serving a vision-language checkpoint needs, as the base had it
            if (Path(spec["base"]) / name).is_file():
                shutil.copyfile(Path(spec["base"]) / name, tmp / name)
        # the export declares only what it was told to skip; vLLM would read the rest with the quantized scheme
        declared = declare_kept_16bit(tmp)
        if declared:
            emit("progress", step="declared 16-bit in ignore", modules=declared)
        info = {
            "autoround_version": ar_version,
            "ignore_added": declared,
            "autoround_kwargs": {k: v for k, v in kwargs.items() if k not in OBJECTS},
            "quantize_seconds": round(time.monotonic() - t0, 2),
            **_peak_gpu_memory(),
        }
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2, default=str))
    return info


if __name__ == "__main__":  # the guard matters: AutoRound's RTN path spawns processes
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = quantize(json.loads(Path(sys.argv[1]).read_text()))
    emit("done", **result)
