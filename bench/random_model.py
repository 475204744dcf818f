"""A random-weight model in a real model's shape, built on the GPU in seconds, for serving benchmarks where only the
shape matters (throughput, memory, start time); its answers are noise.

    python -m bench.random_model DEST [--shape qwen3-8b|qwen3.5-9b] [--layers N] [--device cuda]

The tokenizer is the demo's (2,048 tokens, Qwen's chat template): the hub is out of reach on the GPU machine, and a
2k vocabulary changes the embedding and lm_head sizes only (6.96B parameters for the Qwen3-8B shape instead of 8.2B).
qwen3.5-9b is Qwen/Qwen3.5-9B's own config.json (tests/data/qwen3.5/: hybrid Gated DeltaNet and gated attention
every fourth layer, the 27-block vision tower), saved as the real checkpoint is laid out, with the processor files
AutoRound and vLLM look for.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# Qwen/Qwen3-8B's config.json, the fields that set the shape.
SHAPES: dict[str, dict] = {
    "qwen3-8b": {
        "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 40960, "rope_theta": 1_000_000.0,
        "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
    },
}  # fmt: skip


QWEN35_9B_CONFIG = Path(__file__).resolve().parent.parent / "tests" / "data" / "qwen3.5" / "Qwen3.5-9B-config.json"


def build_qwen35(dest: Path, layers: int | None = None, device: str = "cuda", seed: int = 0) -> dict:
    import shutil

    import torch
    from transformers import GenerationConfig, Qwen3_5Config, Qwen3_5ForConditionalGeneration

    from quant_dag.checkpoint.tiny_qwen35 import PROCESSOR_FILES, QWEN35_FILES, VISION_TOKENS, train_tokenizer

    t0 = time.monotonic()
    tok = train_tokenizer()
    real = json.loads(QWEN35_9B_CONFIG.read_text())
    text = {
        **real["text_config"],
        "vocab_size": len(tok),
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    if layers:
        text["num_hidden_layers"], text["layer_types"] = layers, text["layer_types"][:layers]
    ids = {t: tok.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    config = Qwen3_5Config(
        text_config=text,
        vision_config=real["vision_config"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
        architectures=["Qwen3_5ForConditionalGeneration"],
        dtype="bfloat16",
    )
    config.text_config.dtype = "bfloat16"
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3_5ForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id).save_pretrained(dest)
    for name in PROCESSOR_FILES:
        shutil.copyfile(QWEN35_FILES / name, dest / name)
    facts = {
        "shape": "qwen3.5-9b",
        "layers": text["num_hidden_layers"],
        "params": sum(p.numel() for p in model.parameters()),
        "seconds": round(time.monotonic() - t0, 1),
        "device": device,
    }
    (dest / "random_model.json").write_text(json.dumps(facts, indent=1))
    return facts


def build(dest: Path, shape: str, layers: int | None = None, device: str = "cuda", seed: int = 0) -> dict:
    if shape == "qwen3.5-9b":
        return build_qwen35(dest, layers, device, seed)
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    from quant_dag.checkpoint.tiny_qwen35 import train_tokenizer

    t0 = time.monotonic()
    tok = train_tokenizer()
    fields = {**SHAPES[shape], **({"num_hidden_layers": layers} if layers else {})}
    config = Qwen3Config(
        **fields,
        vocab_size=len(tok),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        architectures=["Qwen3ForCausalLM"],
        dtype="bfloat16",
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id).save_pretrained(dest)
    facts = {
        "shape": shape,
        "layers": fields["num_hidden_layers"],
        "params": sum(p.numel() for p in model.parameters()),
        "seconds": round(time.monotonic() - t0, 1),
        "device": device,
    }
    (dest / "random_model.json").write_text(json.dumps(facts, indent=1))
    return facts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--shape", choices=[*sorted(SHAPES), "qwen3.5-9b"], default="qwen3-8b")
    ap.add_argument("--layers", type=int)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    print(json.dumps(build(args.dest, args.shape, args.layers, args.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
