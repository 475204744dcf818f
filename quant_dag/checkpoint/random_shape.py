"""Shape stand-ins: a real checkpoint's architecture and sizes with random weights, built offline in seconds.

For what only the shape sets: serving throughput, start time, weights and KV-cache memory, quantization time and
memory, the kernels vLLM picks. Their answers are noise (a study treats such a model as pace only: see
`Model.pace_only`). The catalog names one as `source: {random: qwen3.5-9b, layers: 8}`; vLLM's
`--load-format dummy` is the same idea inside one server, but a checkpoint on disk can also be quantized.

- qwen3.5-9b: Qwen/Qwen3.5-9B's own config.json (shipped in quant_dag/data/qwen3.5: hybrid Gated DeltaNet with
  gated attention every fourth layer, the 27-block vision tower), saved as the real checkpoint is laid out with
  the processor files AutoRound and vLLM look for.
- qwen3.5-27b: Qwen/Qwen3.5-27B's shape: the 9B's config.json with the 27B's sizes (hidden 5120, 64 layers,
  24 query and 4 KV heads, 48 linear-attention value heads, the vision tower projecting to 5120), as several public
  repositories that build it give them; not its own file, which is out of reach offline.
- qwen3-8b: Qwen/Qwen3-8B's shape (dense, full attention), the fields of its config.json that set it.

Either may be cut to its first `layers` decoder layers. The tokenizer is the demo's (2,048 tokens, Qwen's chat
template): the hub is out of reach offline, and a 2k vocabulary changes only the embedding and lm_head sizes
(6.96B parameters for the Qwen3-8B shape instead of 8.2B).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from quant_dag.catalog.schema import SHAPE_LAYERS
from quant_dag.home import DATA

QWEN35_9B_CONFIG = DATA / "qwen3.5" / "Qwen3.5-9B-config.json"
# Qwen/Qwen3-8B's config.json, the fields that set the shape.
QWEN3_8B = {
    "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 40960, "rope_theta": 1_000_000.0,
    "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"],
}  # fmt: skip
# Qwen/Qwen3.5-27B's sizes where they differ from the 9B's (the rest of its config is the same family's)
QWEN35_27B_TEXT = {
    "hidden_size": 5120, "intermediate_size": 17408, "num_hidden_layers": 64, "num_attention_heads": 24,
    "num_key_value_heads": 4, "head_dim": 256, "linear_num_key_heads": 16, "linear_num_value_heads": 48,
    "layer_types": ["linear_attention"] * 3 + ["full_attention"],  # x 16: a full-attention layer every fourth
}  # fmt: skip
SHAPES = tuple(SHAPE_LAYERS)
VOCAB_SIZE = 2048  # the demo tokenizer's (tiny_qwen35.train_tokenizer)


def shape_config(shape: str, layers: int | None = None) -> dict:
    """The stand-in's config.json before its token ids are set: the real checkpoint's (or its shape-setting
    fields), the decoder cut to the first `layers` layers (all of them if None), the demo tokenizer's vocabulary."""
    if shape in ("qwen3.5-9b", "qwen3.5-27b"):
        config = json.loads(QWEN35_9B_CONFIG.read_text())
        text = config["text_config"]
        if shape == "qwen3.5-27b":
            text.update(QWEN35_27B_TEXT, layer_types=QWEN35_27B_TEXT["layer_types"] * 16)
            config["vision_config"]["out_hidden_size"] = text["hidden_size"]
    elif shape == "qwen3-8b":
        config = text = dict(QWEN3_8B)
    else:
        raise ValueError(f"unknown shape {shape!r}: one of {', '.join(SHAPES)}")
    if layers is not None:
        if not 1 <= layers <= text["num_hidden_layers"]:
            raise ValueError(f"{shape} has {text['num_hidden_layers']} layers: cannot keep {layers}")
        text["num_hidden_layers"] = layers
        if "layer_types" in text:
            text["layer_types"] = text["layer_types"][:layers]
    text["vocab_size"] = VOCAB_SIZE
    return config


def _model(shape: str, config: dict, tok):
    """The transformers model of `config`, randomly initialized on the current default device, in bf16."""
    import torch
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration, Qwen3Config, Qwen3ForCausalLM

    from quant_dag.checkpoint.tiny_qwen35 import VISION_TOKENS

    ids = {"eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    if shape == "qwen3-8b":
        fields = {k: v for k, v in config.items() if k != "model_type"}
        return Qwen3ForCausalLM(Qwen3Config(**fields, **ids, dtype="bfloat16")).to(torch.bfloat16)
    vision = {t: tok.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    cfg = Qwen3_5Config(
        text_config={**config["text_config"], **ids},
        vision_config=config["vision_config"],
        image_token_id=vision["<|image_pad|>"],
        video_token_id=vision["<|video_pad|>"],
        vision_start_token_id=vision["<|vision_start|>"],
        vision_end_token_id=vision["<|vision_end|>"],
        tie_word_embeddings=False,
        architectures=["Qwen3_5ForConditionalGeneration"],
        dtype="bfloat16",
    )
    cfg.text_config.dtype = "bfloat16"
    return Qwen3_5ForConditionalGeneration(cfg).to(torch.bfloat16)


def build(dest: Path, shape: str = "qwen3.5-9b", layers: int | None = None, device: str = "cpu", seed: int = 0) -> dict:
    """Write a random-weight checkpoint of `shape` to `dest`; returns its facts (also in random_model.json)."""
    import torch
    from transformers import GenerationConfig

    from quant_dag.checkpoint.tiny_qwen35 import PROCESSOR_FILES, QWEN35_FILES, train_tokenizer

    t0 = time.monotonic()
    tok = train_tokenizer(VOCAB_SIZE)
    config = shape_config(shape, layers)
    torch.manual_seed(seed)
    with torch.device(device):
        model = _model(shape, config, tok)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id).save_pretrained(dest)
    if shape != "qwen3-8b":  # a vision-language checkpoint: AutoRound and vLLM look for its processor
        for name in PROCESSOR_FILES:
            shutil.copyfile(QWEN35_FILES / name, dest / name)
    facts = {
        "shape": shape,
        "layers": (config.get("text_config") or config)["num_hidden_layers"],
        "params": sum(p.numel() for p in model.parameters()),
        "seconds": round(time.monotonic() - t0, 1),
        "device": device,
    }
    (dest / "random_model.json").write_text(json.dumps(facts, indent=1))
    return facts
