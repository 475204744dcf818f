"""Asset factories: the catalog becomes `checkpoint/<model>` and `quantized/<model>/<variant>` assets with checks.

Recipes are assets, not partitions: Dagster's code_version is per asset, and a recipe's hash is its
code_version, so editing one recipe marks exactly its own assets (and what is below them) stale.
"""


import contextlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import dagster as dg

from quant_dag.catalog.load import Catalog
from quant_dag.catalog.schema import Model, ThirdPartyVariant, content_hash
from quant_dag.checkpoint.checks import CheckOutcome, Expectation, check_config_agrees, check_size
from quant_dag import gpu
from quant_dag.checkpoint.layout import Layout, read_config, read_layout
from quant_dag.checkpoint.store import FETCH_VERSION, dir_bytes, ensure_checkpoint, write_layout_report
from quant_dag.defs.resources import QuantDag
from quant_dag.procs import write_json_atomic
from quant_dag.quantize.run import check_group_size, plan_device, preflight, quantize
from quant_dag.runtime.version import package_version

def checkpoint_key(model: str) -> dg.AssetKey:
    return dg.AssetKey(["checkpoint", model])


def quantized_key(model: str, variant: str) -> dg.AssetKey:
    return dg.AssetKey(["quantized", model, variant])


def resolved_source(cat: Catalog, source: object) -> dict[str, str]:
    src = source.model_dump()  # type: ignore[attr-defined]
    if "path" in src:
        src["path"] = str((cat.root / src["path"]).resolve())
    return src


def base_checkpoint_path(cat: Catalog, qd: QuantDag, model: str) -> Path:
    src = resolved_source(cat, cat.models[model].source)
    return Path(src["path"]) if "path" in src else qd.paths().checkpoint_dir(model)


def describe_source(src: dict[str, str]) -> str:
    if "hub" in src:
        return f"hub {src['hub']}@{src['revision'][:12]}"
    if "path" in src:
        return f"local path {src['path']}"
    return f"built-in demo model {src['demo']}"


def _layout_table(layout: Layout) -> dg.TableMetadataValue:
    cols = ["family", "bytes", "params", "linear", "linear_16bit"]
    return dg.MetadataValue.table(
        records=[dg.TableRecord({"family": f, **row}) for f, row in layout.family_rows().items()],
        schema=dg.TableSchema(
            columns=[dg.TableColumn(c, "string" if c == "family" else "int") for c in cols],
        ),
    )


def layout_metadata(layout: Layout, reports: dict[str, Path]) -> dict[str, object]:
    summary = layout.summary()
    return {
        "weights_bytes": dg.MetadataValue.int(layout.total_bytes),
        "parameters": dg.MetadataValue.int(layout.total_params),
        "linear_modules": summary["linear_modules"],
        "linear_quantized": summary["linear_quantized"],
        "families_16bit": ", ".join(summary["families_16bit"]) or "none",  # type: ignore[arg-type]
        "dtypes": dg.MetadataValue.json(summary["dtypes"]),
        "precision_layout": _layout_table(layout),
        **{name: dg.MetadataValue.path(str(p)) for name, p in reports.items()},
    }


def _check_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    meta: dict[str, object] = {k: dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v for k, v in outcome.details.items()}
    if outcome.problems:
        meta["problems"] = dg.MetadataValue.md("\n".join(f"- {p}" for p in outcome.problems[:50]))
    return dg.AssetCheckResult(
        passed=outcome.passed,
        description=outcome.summary,
        metadata=meta,
        severity=dg.AssetCheckSeverity.ERROR,
    )


def third_party_path(cat: Catalog, qd: QuantDag, variant: ThirdPartyVariant) -> Path:
    src = resolved_source(cat, variant.source)
    return Path(src["path"]) if "path" in src else qd.paths().quantized_dir(variant.model, variant.name)


def _fetch_asset(
    cat: Catalog,
    key: dg.AssetKey,
    source: object,
    dest_of: Callable[[QuantDag], Path],
    group: str,
    description: str,
    deps: Sequence[dg.AssetKey] = (),
    extra_meta: dict[str, object] | None = None,
) -> dg.AssetsDefinition:
    """An asset that makes a checkpoint available locally (base model or third-party variant) and reports its layout."""
    src = resolved_source(cat, source)

    @dg.asset(
        key=key,
        deps=list(deps),
        group_name=group,
        kinds={"safetensors"} | ({"huggingface"} if "hub" in src else set()),
        code_version=content_hash({"source": src, "fetch": FETCH_VERSION}),
        description=description,
        metadata={"source": dg.MetadataValue.json(src), **(extra_meta or {})},
    )
    def _fetched(context: dg.AssetExecutionContext, quant_dag: QuantDag) -> dg.MaterializeResult:
        path, fetched = ensure_checkpoint(
            src, dest_of(quant_dag), on_log=context.log.info, env=quant_dag.run_profile().quantize.env
        )
        layout = read_layout(path)
        reports = write_layout_report(layout, quant_dag.paths().artifacts(key.path))
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(path)),
                "source": describe_source(src),
                "fetched": fetched,
                "size_on_disk_bytes": dg.MetadataValue.int(dir_bytes(path)),
                **layout_metadata(layout, reports),
            }
        )

    return _fetched


def checkpoint_asset(cat: Catalog, model: Model) -> dg.AssetsDefinition:
    src = resolved_source(cat, model.source)
    return _fetch_asset(
        cat,
        checkpoint_key(model.name),
        model.source,
        lambda qd: base_checkpoint_path(cat, qd, model.name),
        "checkpoints",
        model.description or f"Base checkpoint {model.name}: {describe_source(src)}.",
    )


def third_party_asset(cat: Catalog, variant: ThirdPartyVariant) -> dg.AssetsDefinition:
    src = resolved_source(cat, variant.source)
    return _fetch_asset(
        cat,
        quantized_key(variant.model, variant.name),
        variant.source,
        lambda qd: third_party_path(cat, qd, variant),
        "quantized",
        variant.description or f"{variant.provider}'s {variant.scheme} {variant.method} release of {variant.model}: {describe_source(src)}.",
        deps=[checkpoint_key(variant.model)],
        extra_meta={"provider": variant.provider, "scheme": variant.scheme, "third_party": True},
    )


def recipe_asset(cat: Catalog, model: str, recipe_name: str, autoround_version: str) -> dg.AssetsDefinition:
    recipe = cat.recipes[recipe_name]
    resolved = recipe.resolved()
    recipe_hash = cat.recipe_hash(recipe_name)
    key = quantized_key(model, recipe_name)
    calibration = cat.calibration_path(recipe_name)

    @dg.asset(
        key=key,
        deps=[checkpoint_key(model)],
        group_name="quantized",
        kinds={"autoround", recipe.format},
        pool="gpu",  # caps concurrent quantize steps: `dagster instance concurrency set gpu N`
        code_version=f"{recipe_hash}-autoround{autoround_version}",
        description=recipe.description or f"{model} quantized by AutoRound: {recipe.scheme}, {recipe.format}, preset {recipe.preset}.",
        metadata={"recipe": dg.MetadataValue.json(resolved), "recipe_hash": recipe_hash},
        tags={"scheme": recipe.scheme, "format": recipe.format},
    )
    def _quantized(context: dg.AssetExecutionContext, quant_dag: QuantDag) -> dg.MaterializeResult:
        home = quant_dag.paths()
        profile = quant_dag.run_profile().quantize
        base = base_checkpoint_path(cat, quant_dag, model)
        if not (base / "config.json").is_file():
            raise dg.Failure(f"base checkpoint {base} is missing: materialize {checkpoint_key(model).to_user_string()} first")
        base_layout = read_layout(base)
        bad = check_group_size(base_layout, int(resolved["group_size"]), list(recipe.ignore_layers))  # type: ignore[call-overload]
        if bad:
            raise dg.Failure(
                f"recipe {recipe_name!r}: group_size {resolved['group_size']} does not divide {len(bad)} Linear layer(s) of {model}",
                metadata={"layers": dg.MetadataValue.md("\n".join(f"- {b}" for b in bad[:50]))},
            )
        artifacts = home.artifacts(key.path)
        write_json_atomic(artifacts / "recipe.json", {"name": recipe_name, "hash": recipe_hash, "resolved": resolved})
        on_gpu = profile.device != "cpu"
        with gpu.lease(profile.gpus, home.root / "locks") if on_gpu else contextlib.nullcontext() as held:
            env = {**profile.env, **(held.env() if held else {})}
            report = preflight(probe_fla=on_gpu, env=env, on_log=context.log.debug)
            plan = plan_device(profile.device, report, resolved, base_layout.total_bytes, read_config(base).get("model_type", ""))
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
                "environment": dg.MetadataValue.json(report["versions"]),
                "device_plan": dg.MetadataValue.md("\n".join(f"- {n}" for n in plan.notes)),
                "size_on_disk_bytes": dg.MetadataValue.int(result.size_bytes),
                "size_ratio_vs_base": dg.MetadataValue.float(round(result.layout.total_bytes / base_layout.total_bytes, 4)),
                **layout_metadata(result.layout, reports),
            }
        )

    return _quantized


def variant_checks(
    cat: Catalog, model: str, variant: str, expect: Expectation, path_of: Callable[[QuantDag], Path]
) -> list[dg.AssetChecksDefinition]:
    """Blocking checks between a quantized checkpoint and the serving step below it."""
    key = quantized_key(model, variant)

    @dg.asset_check(
        asset=key,
        name="config_agrees_with_tensors",
        blocking=True,
        description="Every 16-bit Linear is declared 16-bit in the quantization config, every declared pattern matches a module, group sizes divide.",
    )
    def _config(quant_dag: QuantDag) -> dg.AssetCheckResult:
        return _check_result(check_config_agrees(path_of(quant_dag), expect))

    @dg.asset_check(
        asset=key,
        name="size_matches_scheme",
        blocking=True,
        description=f"Size within {expect.tolerance:.0%} of what {expect.scheme} and the requested 16-bit layout predict.",
    )
    def _size(quant_dag: QuantDag) -> dg.AssetCheckResult:
        base = base_checkpoint_path(cat, quant_dag, model)
        path = path_of(quant_dag)
        # Without the base snapshot (e.g. a 397B hub model not downloaded) predict from the variant itself.
        base_layout = read_layout(base) if (base / "config.json").is_file() else read_layout(path)
        return _check_result(check_size(path, expect, base_layout))

    return [_config, _size]


def build_assets(cat: Catalog) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    ar_version = package_version("auto-round")
    assets: list[dg.AssetsDefinition] = []
    checks: list[dg.AssetChecksDefinition] = []
    models = set(cat.study_models()) | {v.model for v in cat.third_party.values()}
    for name in sorted(models):
        assets.append(checkpoint_asset(cat, cat.models[name]))
    for model, recipe_name in cat.quantized_pairs():
        recipe = cat.recipes[recipe_name]
        assets.append(recipe_asset(cat, model, recipe_name, ar_version))
        expect = Expectation(recipe.scheme, int(recipe.resolved()["group_size"]), recipe.ignore_layers)  # type: ignore[call-overload]
        checks += variant_checks(cat, model, recipe_name, expect, lambda qd, m=model, r=recipe_name: qd.paths().quantized_dir(m, r))
    for v in cat.third_party.values():
        assets.append(third_party_asset(cat, v))
        path_of = lambda qd, v=v: third_party_path(cat, qd, v)  # noqa: E731
        checks += variant_checks(cat, v.model, v.name, Expectation(v.scheme, None, v.keep_16bit), path_of)
    return assets, checks
