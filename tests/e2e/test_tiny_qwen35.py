"""The demo's tiny Qwen3.5 models have the real checkpoints' architecture and names, and their answers do not
depend on the CPU: the demo's own build has the tests' files and answers right, and every greedy answer the demo
checks wins by a margin that float noise cannot close."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from safetensors import safe_open

from quant_dag.checkpoint import tiny_qwen35
from quant_dag.checkpoint.layout import read_layout, read_tensors
from quant_dag.serve.verify import SMOKE_QUESTIONS, degenerate

REAL = Path(__file__).parents[1] / "data" / "qwen3.5"
# Written down from the real checkpoints (Qwen/Qwen3.5-9B at c202236, its model.safetensors.index.json: 775
# tensors), digits folded to N. The real models carry a multi-token-prediction head (`mtp.*`) that transformers
# never builds (it drops those tensors on load; vLLM uses them only for speculative decoding).
LAYER = "model.language_model.layers.N."
REAL_9B_TENSORS = {
    "lm_head.weight",
    "model.language_model.embed_tokens.weight",
    "model.language_model.norm.weight",
    LAYER + "input_layernorm.weight",
    LAYER + "post_attention_layernorm.weight",
    *(LAYER + f"linear_attn.{t}" for t in ("A_log", "conv1d.weight", "dt_bias", "norm.weight")),
    *(LAYER + f"linear_attn.{p}.weight" for p in ("in_proj_a", "in_proj_b", "in_proj_qkv", "in_proj_z", "out_proj")),
    *(LAYER + f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")),
    *(LAYER + f"self_attn.{t}.weight" for t in ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm")),
    *(
        f"model.visual.blocks.N.{m}.{p}"
        for m in ("attn.qkv", "attn.proj", "mlp.linear_fc1", "mlp.linear_fc2", "norm1", "norm2")
        for p in ("weight", "bias")
    ),
    *(f"model.visual.merger.{m}.{p}" for m in ("linear_fc1", "linear_fc2", "norm") for p in ("weight", "bias")),
    "model.visual.patch_embed.proj.weight",
    "model.visual.patch_embed.proj.bias",
    "model.visual.pos_embed.weight",
}
# The 35B-A3B's MoE layers in place of the dense MLP (experts stored fused, one 3-D tensor per projection).
REAL_MOE_MLP = {
    "model.language_model.layers.N.mlp.gate.weight",
    "model.language_model.layers.N.mlp.experts.gate_up_proj",
    "model.language_model.layers.N.mlp.experts.down_proj",
    "model.language_model.layers.N.mlp.shared_expert_gate.weight",
    *(f"model.language_model.layers.N.mlp.shared_expert.{p}_proj.weight" for p in ("gate", "up", "down")),
}
# transformers writes these itself and the real files lack them; no key of the real files is missing.
TRANSFORMERS_KEYS = {
    "top": {"dtype"},
    "text": {"bos_token_id", "pad_token_id", "partial_rotary_factor", "tie_word_embeddings", "output_router_logits"},
    "vision": {"rope_parameters"},
}


def patterns(names) -> set[str]:
    return {re.sub(r"\.\d+\.", ".N.", n) for n in names}


@pytest.fixture(scope="module")
def tok():
    return tiny_qwen35.train_tokenizer()


@pytest.mark.parametrize("moe,real", [(False, "Qwen3.5-9B-config.json"), (True, "Qwen3.5-35B-A3B-config.json")])
def test_config_has_the_real_checkpoints_keys_and_types(tok, moe, real, tmp_path):
    tiny_qwen35.build_config(tok, moe).save_pretrained(tmp_path)  # config.json as the checkpoint carries it
    ours = json.loads((tmp_path / "config.json").read_text())
    ref = json.loads((REAL / real).read_text())
    assert (
        ours["model_type"] == ref["model_type"]
        and ours["text_config"]["model_type"] == ref["text_config"]["model_type"]
    )
    for part, a, b in (
        ("top", ours, ref),
        ("text", ours["text_config"], ref["text_config"]),
        ("vision", ours["vision_config"], ref["vision_config"]),
    ):
        assert set(b) <= set(a), (part, set(b) - set(a))
        assert set(a) - set(b) <= TRANSFORMERS_KEYS[part], (part, set(a) - set(b))
    text, real_text = ours["text_config"], ref["text_config"]
    # the hybrid's proportions: 3 linear-attention layers to 1 full, value heads twice the key heads, head dims 128
    assert text["layer_types"] == real_text["layer_types"][:4]
    assert (
        text["linear_num_value_heads"] / text["linear_num_key_heads"]
        == real_text["linear_num_value_heads"] / real_text["linear_num_key_heads"]
    )
    assert text["linear_key_head_dim"] == real_text["linear_key_head_dim"] == 128
    assert text["rope_parameters"]["partial_rotary_factor"] == real_text["rope_parameters"]["partial_rotary_factor"]
    rotary_half = text["head_dim"] * text["rope_parameters"]["partial_rotary_factor"] / 2
    assert sum(text["rope_parameters"]["mrope_section"]) == rotary_half
    # the vision special tokens point at the tiny tokenizer's own
    tokens = {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>"}
    tokens |= {"vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>"}
    for key, token in tokens.items():
        assert ours[key] == tok.convert_tokens_to_ids(token) != tok.unk_token_id


def test_the_chat_template_is_qwens_and_the_training_prompts_follow_it(tok):
    assert (
        tok.chat_template == (Path(tiny_qwen35.__file__).parent.parent / "data/qwen3.5/chat_template.jinja").read_text()
    )
    messages = [{"role": "user", "content": SMOKE_QUESTIONS[0]}]
    for thinking in (True, False):
        rendered = tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking
        )
        assert rendered == tiny_qwen35.chat_prompt(SMOKE_QUESTIONS[0], thinking)


def test_digits_are_single_tokens_as_in_qwens_tokenizer(tok):
    assert [t for t in tok.tokenize("What is 37 + 45?") if t.strip("Ġ").isdigit()] == ["3", "7", "4", "5"]


def test_tensor_names_are_the_real_checkpoints(tmp_path):
    """Built untrained (names do not depend on training): the dense model's tensors are the 9B's, its MoE twin's
    the same with the 35B-A3B's expert, router and shared-expert tensors in place of the dense MLP."""
    for moe in (False, True):
        tiny_qwen35.build(tmp_path / str(moe), moe=moe, steps=0)
        ours = patterns(t.name for t in read_tensors(tmp_path / str(moe)))
        dense_mlp = {p for p in REAL_9B_TENSORS if ".mlp." in p and "visual" not in p}
        expected = (REAL_9B_TENSORS - dense_mlp) | REAL_MOE_MLP if moe else REAL_9B_TENSORS
        assert ours == expected, (moe, ours ^ expected)
        families = read_layout(tmp_path / str(moe)).family_rows()
        assert families["vision"]["linear"] > 0 and families["linear_attn"]["linear"] > 0
        assert ("shared_expert" in families) == ("experts" in families) == moe
        for name in tiny_qwen35.PROCESSOR_FILES:
            assert (tmp_path / str(moe) / name).read_bytes() == (tiny_qwen35.QWEN35_FILES / name).read_bytes()


def smoke_prompts() -> list[str]:
    return [tiny_qwen35.chat_prompt(q, thinking) for q in SMOKE_QUESTIONS for thinking in (False, True)]


def test_smoke_answers_are_right_and_win_by_a_wide_margin(tiny_qwen):
    """The answers the endpoint check reads: right, ended, not degenerate, and decided at every token by at least
    one logit, far above what another CPU's kernels change (bf16 logits here are spaced 1/32 to 1/16 apart)."""
    answers = tiny_qwen35.greedy(tiny_qwen, smoke_prompts())
    for (text, margin), expected in zip(answers, ["Paris", "Paris", "8", "8"]):
        final = text.split("</think>")[-1]
        assert final.strip() == f"{expected}<|im_end|>", text
        assert degenerate(text.replace("<|im_end|>", "")) is None
        assert margin >= 1.0, (text, margin)


def test_each_demo_model_as_the_demo_built_it_is_the_tests_model_and_answers_right(tiny_qwen, demo, tmp_path):
    """The models the demo built in its own step: the same files as the tests' build wherever no float is involved
    (config, tokenizer, chat template, processors), the same tensors by name, shape and dtype, and right, ended,
    undegenerate answers to the endpoint's smoke questions, decided at every token. Their weights are not compared
    bit for bit: two builds on one machine are the same bytes only where its BLAS is reproducible (pinned by
    REPRODUCIBLE_BUILD_ENV; bench/demo_model_reproducibility.py measures it), and a change of float order gives 400
    training steps another, equally trained model (measured there: same answers, other weights)."""
    _, home, _, _ = demo
    moe = tmp_path / "tiny-qwen3.5-moe"  # its files, untrained: none of those compared depends on training
    tiny_qwen35.build(moe, moe=True, steps=0)
    for ours, demos in ((tiny_qwen, home / "checkpoints/tiny-qwen3.5"), (moe, home / "checkpoints/tiny-qwen3.5-moe")):
        files = {p.name for p in ours.iterdir() if p.suffix in (".json", ".jinja")} - {"quant_dag_source.json"}
        assert {"config.json", "tokenizer.json", "chat_template.jinja", *tiny_qwen35.PROCESSOR_FILES} <= files
        for name in sorted(files):
            assert (ours / name).read_bytes() == (demos / name).read_bytes(), (demos.name, name)
        with (
            safe_open(str(ours / "model.safetensors"), "pt") as a,
            safe_open(str(demos / "model.safetensors"), "pt") as b,
        ):
            assert set(a.keys()) == set(b.keys())
            for k in a.keys():  # noqa: SIM118 - safe_open is not a mapping
                x, y = a.get_slice(k), b.get_slice(k)
                assert (x.get_shape(), x.get_dtype()) == (y.get_shape(), y.get_dtype()), k
        for (text, margin), expected in zip(tiny_qwen35.greedy(demos, smoke_prompts()), ["Paris", "Paris", "8", "8"]):
            assert text.split("</think>")[-1].strip() == f"{expected}<|im_end|>", (demos.name, text)
            assert degenerate(text.replace("<|im_end|>", "")) is None
            assert margin > 0, (demos.name, text, margin)


def test_a_shape_stand_in_is_built_by_the_checkpoint_step_in_the_real_9bs_shape(tmp_path):
    """`{random: qwen3.5-9b, layers: 1}` through the checkpoint step's own path (ensure_checkpoint, a child
    process): the real 9B's tensor names and widths (its first layer is Gated DeltaNet, so no full-attention
    tensors), the whole vision tower, bf16, the demo tokenizer and the processor files vLLM and AutoRound look for."""
    from quant_dag.checkpoint.store import ensure_checkpoint

    path, fetched = ensure_checkpoint({"random": "qwen3.5-9b", "layers": 1}, tmp_path / "shape", on_log=lambda s: None)
    assert fetched
    real = json.loads((REAL / "Qwen3.5-9B-config.json").read_text())
    text = json.loads((path / "config.json").read_text())["text_config"]
    assert (text["num_hidden_layers"], text["layer_types"]) == (1, ["linear_attention"])
    tensors = {t.name: t for t in read_tensors(path)}
    assert patterns(tensors) == {p for p in REAL_9B_TENSORS if ".self_attn." not in p}
    hidden, inter = real["text_config"]["hidden_size"], real["text_config"]["intermediate_size"]
    assert tensors["model.language_model.layers.0.mlp.gate_proj.weight"].shape == (inter, hidden)
    assert tensors["lm_head.weight"].shape == (2048, hidden)
    depth = real["vision_config"]["depth"]
    assert {n.split(".")[3] for n in tensors if n.startswith("model.visual.blocks.")} == {str(i) for i in range(depth)}
    assert {t.dtype for t in tensors.values()} == {"BF16"}
    for name in tiny_qwen35.PROCESSOR_FILES:
        assert (path / name).read_bytes() == (tiny_qwen35.QWEN35_FILES / name).read_bytes()
    assert json.loads((path / "random_model.json").read_text())["layers"] == 1
