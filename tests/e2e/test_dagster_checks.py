"""Through Dagster: third-party checkpoints from local paths get their layout and blocking checks in a real run."""

from __future__ import annotations

import textwrap

import dagster as dg
import polars as pl

from quant_dag.definitions import build_definitions
from tests.support.ckpt import (
    base_tensors,
    compressed_tensors_config,
    nvfp4_tensors,
    quantized_tensors,
    write_checkpoint,
)


def test_broken_and_good_third_party_variants(tmp_path):
    base = write_checkpoint(tmp_path / "base", base_tensors(), None)
    good = write_checkpoint(
        tmp_path / "good", quantized_tensors(nvfp4_tensors), compressed_tensors_config(["lm_head", "re:.*visual.*"])
    )
    # the llm_compressor export bug: vision tower stored bf16 but missing from `ignore`
    broken = write_checkpoint(
        tmp_path / "broken", quantized_tensors(nvfp4_tensors), compressed_tensors_config(["lm_head"])
    )
    catalog = tmp_path / "assets"
    catalog.mkdir()
    (catalog / "study.yaml").write_text(
        textwrap.dedent(
            f"""
            models:
              - name: m
                source: {{path: {base}}}
            third_party:
              - {{name: good-nvfp4, model: m, provider: test, scheme: NVFP4, keep_16bit: [visual], source: {{path: {good}}}}}
              - {{name: broken-nvfp4, model: m, provider: test, scheme: NVFP4, keep_16bit: [visual], source: {{path: {broken}}}}}
            studies:
              - name: s
                models: [m]
                third_party: [good-nvfp4, broken-nvfp4]
            """
        )
    )
    defs = build_definitions(catalog=catalog, home=tmp_path / "home")
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("study_s").execute_in_process(instance=instance, raise_on_error=False)
        evals = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
        assert evals[("good-nvfp4", "config_agrees_with_tensors")].passed
        assert evals[("good-nvfp4", "size_matches_scheme")].passed
        bad = evals[("broken-nvfp4", "config_agrees_with_tensors")]
        assert not bad.passed
        assert "model.visual.blocks.0.attn.qkv (vision)" in bad.metadata["problems"].value
        assert evals[("broken-nvfp4", "size_matches_scheme")].passed  # the size is right; the config is not

        event = instance.get_latest_materialization_event(dg.AssetKey(["quantized", "m", "good-nvfp4"]))
        meta = event.asset_materialization.metadata
        assert meta["families_16bit"].value == "lm_head, vision"
        table = meta["precision_layout"].value
        assert {r.data["family"] for r in table.records} >= {"linear_attn", "self_attn", "mlp", "vision", "lm_head"}
        fams = pl.read_parquet(meta["layout_families"].value)
        assert fams.filter(pl.col("family") == "vision")["linear_16bit"].item() == 1
        # the path sources were used in place, not copied into the home
        assert meta["path"].value == str(good) and not (tmp_path / "home" / "quantized").exists()
