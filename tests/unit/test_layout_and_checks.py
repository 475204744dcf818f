"""Layout reports and asset checks on checkpoints the tests build: good ones pass, broken ones fail precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from quant_dag.checkpoint.checks import Expectation, check_config_agrees, check_size
from quant_dag.checkpoint.layout import family_of, read_layout
from quant_dag.quantize.run import check_group_size
from tests.support.ckpt import (
    LINEARS,
    autoround_config,
    base_tensors,
    compressed_tensors_config,
    fp8_tensors,
    gptq_tensors,
    nvfp4_tensors,
    quantized_tensors,
    write_checkpoint,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("base"), base_tensors(), None)


@pytest.mark.parametrize(
    "name, family",
    [
        ("model.layers.3.linear_attn.in_proj_qkv.weight", "linear_attn"),
        ("model.language_model.layers.3.self_attn.q_proj.qweight", "self_attn"),
        ("model.layers.0.mlp.shared_expert.down_proj.weight", "shared_expert"),
        ("model.layers.0.mlp.shared_expert_gate.weight", "shared_expert"),
        ("model.layers.0.mlp.gate.weight", "router"),
        ("model.layers.0.mlp.experts.7.up_proj.weight_packed", "experts"),
        ("model.layers.0.mlp.gate_proj.weight", "mlp"),
        ("model.visual.blocks.0.attn.qkv.weight", "vision"),
        ("lm_head.weight", "lm_head"),
        ("model.embed_tokens.weight", "embeddings"),
        ("model.layers.0.post_attention_layernorm.weight", "norms"),
        ("model.layers.0.linear_attn.norm.weight", "norms"),
        ("mtp.layers.0.mlp.up_proj.weight", "mlp"),
    ],
)
def test_family_of_real_module_names(name, family):
    assert family_of(name) == family


def test_layout_of_a_bf16_checkpoint(base):
    layout = read_layout(base)
    fams = layout.family_rows()
    assert fams["linear_attn"]["linear"] == 3 and fams["linear_attn"]["linear_16bit"] == 3
    assert fams["vision"]["linear"] == 1
    # conv1d (3-D) and A_log are linear_attn tensors but not Linear modules
    assert fams["linear_attn"]["params"] == 128 * 384 + 128 * 128 + 128 * 128 + 640 * 4 + 2
    assert layout.total_params == sum(i * o for i, o in LINEARS.values()) + 512 * 128 + 2 * 128 + 640 * 4 + 2
    assert all(not lin.quantized for lin in layout.linears)
    assert layout.dtype_rows()["F32"]["tensors"] == 1


def test_position_tables_are_not_linear_layers(tmp_path):
    """A vision tower's `pos_embed` is a 2-D table like `embed_tokens`: read as a Linear, it would be a 16-bit
    module no `ignore` list declares, and every real Qwen3.5 llm_compressor export would fail its check."""
    tensors = {
        **base_tensors(),
        "model.visual.pos_embed.weight": ("BF16", (64, 64)),
        "model.wpe.weight": ("BF16", (8, 128)),
    }
    names = {lin.name for lin in read_layout(write_checkpoint(tmp_path / "b", tensors, None)).linears}
    assert "model.visual.pos_embed" not in names and "model.wpe" not in names
    assert "model.visual.blocks.0.attn.qkv" in names


def test_fused_experts_are_quantizable_linears_in_the_size_prediction(tmp_path):
    """Qwen3.5-MoE checkpoints store each layer's experts fused ([experts, out, in], no `.weight`); AutoRound writes
    them back one Linear per expert. The prediction must count the fused tensors as weights the scheme packs."""
    experts, hidden, inter = 4, 128, 64
    moe = "model.layers.0.mlp.experts"
    base = {
        **base_tensors(),
        f"{moe}.gate_up_proj": ("BF16", (experts, 2 * inter, hidden)),
        f"{moe}.down_proj": ("BF16", (experts, hidden, inter)),
    }
    base_layout = read_layout(write_checkpoint(tmp_path / "base", base, None))
    fused = [lin for lin in base_layout.linears if lin.family == "experts"]
    assert {(lin.name, lin.in_features, lin.out_features) for lin in fused} == {
        (f"{moe}.gate_up_proj", hidden, 2 * inter),
        (f"{moe}.down_proj", inter, hidden),
    }
    quant = quantized_tensors(gptq_tensors)
    for e in range(experts):
        for proj, (i, o) in {
            "gate_proj": (hidden, inter),
            "up_proj": (hidden, inter),
            "down_proj": (inter, hidden),
        }.items():
            quant.update(gptq_tensors(f"{moe}.{e}.{proj}", i, o))
    ckpt = write_checkpoint(
        tmp_path / "q", quant, autoround_config(extra={"model.visual.blocks.0.attn.qkv": {"bits": 16}})
    )
    out = check_size(ckpt, Expectation("W4A16", group_size=32, keep_16bit=("visual", "lm_head")), base_layout)
    assert out.passed, out.summary


def test_layout_unpacks_gptq_and_nvfp4_shapes(tmp_path):
    ar = write_checkpoint(tmp_path / "ar", quantized_tensors(gptq_tensors), autoround_config())
    nv = write_checkpoint(tmp_path / "nv", quantized_tensors(nvfp4_tensors), compressed_tensors_config(["lm_head"]))
    for path, storage in ((ar, "int-packed"), (nv, "fp4-packed")):
        layout = read_layout(path)
        down = next(lin for lin in layout.linears if lin.name == "model.layers.0.mlp.down_proj")
        assert (down.in_features, down.out_features, down.storage) == (256, 128, storage)
        assert layout.family_rows()["mlp"]["params"] == 4 * 128 * 256  # logical params, not packed int32 words
        assert {lin.family for lin in layout.kept_16bit()} == {"vision", "lm_head"}


def test_good_autoround_checkpoint_passes(tmp_path, base):
    extra = {"model.visual.blocks.0.attn.qkv": {"bits": 16, "data_type": "fp"}}
    ckpt = write_checkpoint(tmp_path / "q", quantized_tensors(gptq_tensors), autoround_config(extra=extra))
    expect = Expectation("W4A16", 32)
    assert check_config_agrees(ckpt, expect).passed
    size = check_size(ckpt, expect, read_layout(base))
    assert size.passed, size.summary


def test_linear_attn_left_16bit_silently_is_caught(tmp_path):
    """AutoRound #1650: layers it skipped stay bf16; a config that does not say so misleads the loader."""
    ckpt = write_checkpoint(
        tmp_path / "q", quantized_tensors(gptq_tensors, ("visual", "lm_head", "linear_attn")), autoround_config()
    )
    out = check_config_agrees(ckpt, Expectation("W4A16", 32))
    assert not out.passed
    assert any("model.layers.0.linear_attn.in_proj_qkv" in p and "does not declare" in p for p in out.problems)
    assert not any("visual" in p for p in out.problems)  # outside block_name_to_quantize: 16-bit by design


def test_vision_tower_missing_from_ignore_is_caught(tmp_path):
    """llm_compressor export never lists the vision tower in `ignore` (FACTS.md)."""
    ckpt = write_checkpoint(tmp_path / "q", quantized_tensors(nvfp4_tensors), compressed_tensors_config(["lm_head"]))
    out = check_config_agrees(ckpt, Expectation("NVFP4"))
    assert not out.passed
    assert out.problems == [
        "model.visual.blocks.0.attn.qkv (vision) is stored BF16 but compressed-tensors config does not declare it 16-bit"
    ]
    fixed = write_checkpoint(
        tmp_path / "ok", quantized_tensors(nvfp4_tensors), compressed_tensors_config(["lm_head", "re:.*visual.*"])
    )
    assert check_config_agrees(fixed, Expectation("NVFP4")).passed


def test_fp8_static_lm_head_missing_from_ignore_is_caught(tmp_path):
    """FP8_STATIC left lm_head in bf16 but out of `ignore`: NaN logits in vLLM."""
    ckpt = write_checkpoint(
        tmp_path / "q",
        quantized_tensors(fp8_tensors, ("lm_head",)),
        compressed_tensors_config([], num_bits=8, fmt="float-quantized"),
    )
    out = check_config_agrees(ckpt, Expectation("FP8_STATIC"))
    assert not out.passed
    assert out.problems == ["lm_head (lm_head) is stored BF16 but compressed-tensors config does not declare it 16-bit"]


def test_the_export_fixup_declares_what_the_tensors_keep_16bit(tmp_path):
    """Seen on the H100: AutoRound's llm_compressor export of NVFP4 wrote `ignore: [lm_head]` with the vision tower
    stored BF16; FP8_STATIC left lm_head out too. The fix-up names exactly the 16-bit Linear layers, in both files
    the exporter writes, and the check then passes; a second run adds nothing."""
    import json

    from quant_dag.checkpoint.checks import declare_kept_16bit

    qc = compressed_tensors_config([], num_bits=8, fmt="float-quantized")
    ckpt = write_checkpoint(tmp_path / "q", quantized_tensors(fp8_tensors, ("lm_head", "visual")), qc)
    (ckpt / "quantization_config.json").write_text(json.dumps(qc))
    assert not check_config_agrees(ckpt, Expectation("FP8_STATIC")).passed
    added = declare_kept_16bit(ckpt)
    assert added == ["lm_head", "model.visual.blocks.0.attn.qkv"]
    assert json.loads((ckpt / "config.json").read_text())["quantization_config"]["ignore"] == added
    assert json.loads((ckpt / "quantization_config.json").read_text())["ignore"] == added
    assert check_config_agrees(ckpt, Expectation("FP8_STATIC")).passed
    assert declare_kept_16bit(ckpt) == []
    # what the config already declares, by name or pattern, is kept and not repeated
    ok = write_checkpoint(
        tmp_path / "ok", quantized_tensors(nvfp4_tensors), compressed_tensors_config(["lm_head", "re:.*visual.*"])
    )
    assert declare_kept_16bit(ok) == []
    # auto-round's own configs are AutoRound's to write
    ar = write_checkpoint(tmp_path / "ar", quantized_tensors(gptq_tensors, ("lm_head",)), autoround_config())
    before = (ar / "config.json").read_text()
    assert declare_kept_16bit(ar) == [] and (ar / "config.json").read_text() == before


def test_ignore_pattern_that_matches_nothing_is_caught(tmp_path):
    """vLLM #40252: names in `ignore` that match no module leave layers read with the wrong format."""
    ckpt = write_checkpoint(
        tmp_path / "q",
        quantized_tensors(nvfp4_tensors, ("visual", "lm_head", "linear_attn")),
        compressed_tensors_config(
            ["lm_head", "re:.*visual.*", "re:.*linear_attn\\.in_proj_qkvz", "re:.*linear_attn.*"]
        ),
    )
    out = check_config_agrees(ckpt, Expectation("NVFP4", keep_16bit=("linear_attn",)))
    assert not out.passed
    assert out.problems == [
        "16-bit pattern 're:.*linear_attn\\\\.in_proj_qkvz' in compressed-tensors config matches no Linear module"
    ]


def test_declared_16bit_but_stored_quantized_is_caught(tmp_path):
    extra = {".*mlp.*": {"bits": 16, "data_type": "fp"}}
    ckpt = write_checkpoint(tmp_path / "q", quantized_tensors(gptq_tensors), autoround_config(extra=extra))
    out = check_config_agrees(ckpt, Expectation("W4A16", 32))
    assert not out.passed
    assert "model.layers.0.mlp.down_proj is declared 16-bit by the config but stored quantized" in out.problems


def test_group_size_that_does_not_divide_is_caught(tmp_path, base):
    ckpt = write_checkpoint(tmp_path / "q", quantized_tensors(gptq_tensors), autoround_config(group=256))
    out = check_config_agrees(ckpt, Expectation("W4A16", 256))
    assert not out.passed
    assert any("in_features 128 is not divisible by group_size 256" in p for p in out.problems)
    # and the preflight before quantizing names the same layers
    bad = check_group_size(read_layout(base), 256, [])
    assert "model.layers.0.mlp.up_proj: in_features 128 is not divisible by group_size 256" in bad
    assert not any("visual" in b or "lm_head" in b for b in bad)
    assert check_group_size(read_layout(base), 256, ["mlp", "attn"]) == []


def test_four_bit_checkpoint_nearly_fp8_sized_is_flagged_with_its_families(tmp_path, base):
    """Declared and consistent, but the MLP stayed 16-bit: the size check names the family."""
    extra = {".*mlp.*": {"bits": 16, "data_type": "fp"}}
    ckpt = write_checkpoint(
        tmp_path / "q", quantized_tensors(gptq_tensors, ("visual", "lm_head", "mlp")), autoround_config(extra=extra)
    )
    expect = Expectation("W4A16", 32)
    assert check_config_agrees(ckpt, expect).passed
    out = check_size(ckpt, expect, read_layout(base))
    assert not out.passed
    assert "explained by: mlp (+" in out.summary
    assert out.details["ratio"] > 1.3
    # the same checkpoint passes when the expectation says the MLP stays 16-bit
    assert check_size(ckpt, Expectation("W4A16", 32, ("mlp",)), read_layout(base)).passed


def test_config_without_quantization_config_fails(base):
    out = check_config_agrees(base, Expectation("W4A16"))
    assert not out.passed and out.summary == "config.json has no quantization_config"


def test_packed_output_width_the_loader_rejects_is_caught(tmp_path):
    """AutoRound's model-free RTN packed linear_attn.in_proj_a/b (2 outputs) into int32 zero points."""
    tensors = quantized_tensors(gptq_tensors)
    tensors.update(gptq_tensors("model.layers.0.linear_attn.in_proj_a", 128, 2))
    tensors["model.layers.0.linear_attn.in_proj_a.qzeros"] = ("I32", (4, 1))
    ckpt = write_checkpoint(tmp_path / "q", tensors, autoround_config())
    out = check_config_agrees(ckpt, Expectation("W4A16", 32))
    assert out.problems == [
        "model.layers.0.linear_attn.in_proj_a: out_features 2 is not divisible by 8 (int32 packing of 4-bit zero points): loaders reject it"
    ]
