"""`quantized/<model>/<variant>`: each recipe's AutoRound output and each third-party release, with the blocking
checks that stand between a quantized checkpoint and the serving step below it.

Recipes are assets, not partitions: Dagster's code_version is per asset, and a recipe's hash is its
code_version, so editing one recipe marks exactly its own assets (and what is below them) stale.
"""

import contextlib
import json
import os
import socket

import dagster as dg

from quant_dag import gpu
from quant_dag.catalog import graph
from quant_dag.catalog.load import Catalog
from quant_dag.catalog.schema import ThirdPartyVariant
from quant_dag.checkpoint.checks import CheckOutcome, Expectation, check_config_agrees, check_size
from quant_dag.checkpoint.layout import read_config, read_layout
from quant_dag.checkpoint.locate import (
    base_checkpoint_path,
    checkpoint_path_of,
    describe_source,
    resolved_source,
    third_party_path,
)
from quant_dag.checkpoint.store import write_layout_report
from quant_dag.defs.checkpoints import fetch_asset, layout_metadata
from quant_dag.defs.resources import QuantDag
from quant_dag.procs import write_json_atomic
from quant_dag.quantize.run import check_group_size, plan_device, preflight, quantize
from quant_dag.runtime.version import package_version


def _check_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    meta: dict[str, object] = {
        k: dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v for k, v in outcome.details.items()
    }
    if outcome.problems:
        meta["problems"] = dg.MetadataValue.md("\n".join(f"- {p}" for p in outcome.problems[:50]))
    return dg.AssetCheckResult(
        passed=outcome.passed,
        description=outcome.summary,
        metadata=meta,
        severity=dg.AssetCheckSeverity.ERROR,
    )


def third_party_asset(cat: Catalog, variant: ThirdPartyVariant) -> dg.AssetsDefinition:
    src = resolved_source(cat, variant.source)
    return fetch_asset(
        cat,
        dg.AssetKey(graph.quantized(variant.model, variant.name)),
        variant.source,
        lambda qd: third_party_path(cat, qd.paths(), variant),
        "quantized",
        variant.description
        or f"{variant.provider}'s {variant.scheme} {variant.method} release of {variant.model}: "
        f"{describe_source(src)}.",
        deps=[dg.AssetKey(graph.checkpoint(variant.model))],
        extra_meta={"provider": variant.provider, "scheme": variant.scheme, "third_party": True},
    )


def recipe_asset(
    cat: Catalog, model: str, recipe_name: str, autoround_version: str, op_tags: dict[str, str] | None = None
) -> dg.AssetsDefinition:
    recipe = cat.recipes[recipe_name]
    resolved = recipe.resolved()
    recipe_hash = cat.recipe_hash(recipe_name)
    key = dg.AssetKey(graph.quantized(model, recipe_name))
    calibration = cat.calibration_path(recipe_name)

    @dg.asset(
        key=key,
        deps=[dg.AssetKey(graph.checkpoint(model))],
        group_name="quantized",
        kinds={"autoround", recipe.format},
        pool="gpu",  # caps concurrent quantize steps: `dagster instance concurrency set gpu N`
        code_version=f"{recipe_hash}-autoround{autoround_version}",
        description=recipe.description
        or f"{model} quantized by AutoRound: {recipe.scheme}, {recipe.format}, preset {recipe.preset}.",
        metadata={"recipe": dg.MetadataValue.json(resolved), "recipe_hash": recipe_hash},
        tags={"scheme": recipe.scheme, "format": recipe.format},
        op_tags=op_tags,  # what a cluster scheduler reserves for the step (defs/cluster.py)
    )
    def _quantized(context: dg.AssetExecutionContext, quant_dag: QuantDag) -> dg.MaterializeResult:
        home = quant_dag.paths()
        run_profile = quant_dag.run_profile()
        profile = run_profile.quantize
        base = base_checkpoint_path(cat, quant_dag.paths(), model)
        if not (base / "config.json").is_file():
            raise dg.Failure(
                f"base checkpoint {base} is missing: materialize {graph.key_string(graph.checkpoint(model))} first"
            )
        base_layout = read_layout(base)
        bad = check_group_size(base_layout, int(resolved["group_size"]), list(recipe.ignore_layers))  # type: ignore[call-overload]
        if bad:
            raise dg.Failure(
                f"recipe {recipe_name!r}: group_size {resolved['group_size']} does not divide {len(bad)} "
                f"Linear layer(s) of {model}",
                metadata={"layers": dg.MetadataValue.md("\n".join(f"- {b}" for b in bad[:50]))},
            )
        artifacts = home.artifacts(key.path)
        write_json_atomic(
            artifacts / graph.RECIPE_FILE, {"name": recipe_name, "hash": recipe_hash, "resolved": resolved}
        )
        on_gpu = profile.device != "cpu"
        on_cluster = run_profile.cluster is not None  # the scheduler reserved the GPUs: no lock on this host
        with (
            gpu.hold(
                profile.gpus,
                home.root / "locks",
                scheduler_assigned=on_cluster,
                label=key.to_user_string(),
                waiting=context.log.info,
            )
            if on_gpu
            else contextlib.nullcontext()
        ) as held:
            env = {**profile.env, **(held.env() if held else {})}
            report = preflight(probe_fla=on_gpu, env=env, on_log=context.log.debug)
            plan = plan_device(
                profile.device, report, resolved, base_layout.total_bytes, read_config(base).get("model_type", "")
            )
            for note in plan.notes:
                context.log.info(note)
            result = quantize(
                base=base,
                output=home.quantized_dir(model, recipe_name),
                recipe=plan.recipe,
                calibration=str(calibration) if calibration else recipe.calibration,
                device=profile.device,
                workdir=artifacts,
                on_log=context.log.debug,
                on_event=lambda e: context.log.info(json.dumps(e)[:500]) if e.get("event") != "done" else None,
                env=env,
                use_fla=plan.use_fla,
            )
        reports = write_layout_report(result.layout, artifacts)
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(result.path)),
                "wall_time_s": dg.MetadataValue.float(result.wall_s),
                "peak_memory_bytes": dg.MetadataValue.int(result.peak_rss_bytes),
                "autoround_version": result.autoround_version,
                "recipe_hash": recipe_hash,
                "device": profile.device,
                "gpus_leased": dg.MetadataValue.json(held.describe() if held else []),
                # what a cluster scheduler reserved for the step (Ray sets it even for declared GPUs)
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                "host": socket.gethostname(),
                "environment": dg.MetadataValue.json(report["versions"]),
                "device_plan": dg.MetadataValue.md("\n".join(f"- {n}" for n in plan.notes)),
                "size_on_disk_bytes": dg.MetadataValue.int(result.size_bytes),
                "size_ratio_vs_base": dg.MetadataValue.float(
                    round(result.layout.total_bytes / base_layout.total_bytes, 4)
                ),
                **layout_metadata(result.layout, reports),
            }
        )

    return _quantized


def variant_checks(cat: Catalog, model: str, variant: str, expect: Expectation) -> list[dg.AssetChecksDefinition]:
    """Blocking checks between a quantized checkpoint and the serving step below it."""
    key = dg.AssetKey(graph.quantized(model, variant))

    @dg.asset_check(
        asset=key,
        name="config_agrees_with_tensors",
        blocking=True,
        description="Every 16-bit Linear is declared 16-bit in the quantization config, every declared pattern "
        "matches a module, group sizes divide.",
    )
    def _config(quant_dag: QuantDag) -> dg.AssetCheckResult:
        return _check_result(check_config_agrees(checkpoint_path_of(cat, quant_dag.paths(), model, variant), expect))

    @dg.asset_check(
        asset=key,
        name="size_matches_scheme",
        blocking=True,
        description=f"Size within {expect.tolerance:.0%} of what {expect.scheme} and the requested 16-bit layout "
        "predict.",
    )
    def _size(quant_dag: QuantDag) -> dg.AssetCheckResult:
        base = base_checkpoint_path(cat, quant_dag.paths(), model)
        path = checkpoint_path_of(cat, quant_dag.paths(), model, variant)
        # Without the base snapshot (e.g. a 397B hub model not downloaded) predict from the variant itself.
        base_layout = read_layout(base) if (base / "config.json").is_file() else read_layout(path)
        return _check_result(check_size(path, expect, base_layout))

    return [_config, _size]


def definitions(cat: Catalog, op_tags: dict[str, str] | None = None) -> dg.Definitions:
    """Every recipe applied to every model a study names, and every third-party release, each with its checks.
    `op_tags`: the quantize steps' resource request on a cluster."""
    ar_version = package_version("auto-round")
    assets: list[dg.AssetsDefinition] = []
    checks: list[dg.AssetChecksDefinition] = []
    for model, recipe_name in cat.quantized_pairs():
        recipe = cat.recipes[recipe_name]
        assets.append(recipe_asset(cat, model, recipe_name, ar_version, op_tags))
        expect = Expectation(recipe.scheme, int(recipe.resolved()["group_size"]), recipe.ignore_layers)  # type: ignore[call-overload]
        checks += variant_checks(cat, model, recipe_name, expect)
    for v in cat.third_party.values():
        assets.append(third_party_asset(cat, v))
        checks += variant_checks(cat, v.model, v.name, Expectation(v.scheme, None, v.keep_16bit))
    return dg.Definitions(assets=assets, asset_checks=checks)
