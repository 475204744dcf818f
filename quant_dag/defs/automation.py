"""Declarative automation: a changed recipe or a changed upstream rebuilds exactly what depends on it.

Dagster 1.13's `eager()` reacts to upstream updates only, and `code_version_changed()` compares with the
previous sensor tick, so a recipe edited while the sensor was off is never noticed. `CodeVersionDrift`
compares an asset's code version with the one its latest materialization ran with instead: an edit is seen
whenever the sensor next evaluates. Missing assets are not materialized automatically (the seed study's
would start hub downloads and GPU work on a laptop): a study's first run is its job; automation keeps it fresh.
"""

import warnings

import dagster as dg

SENSOR = "quant_dag_automation"
OWNER = "team:quant-dag"  # every asset's owner in the UI


class CodeVersionDrift(dg.AutomationCondition):
    """True once per code version: when the asset was materialized before with another code version.

    The cursor remembers the code version it fired for, so a request is not repeated every tick while the
    asset runs (or after it failed); a further edit fires again. It works on the sensor's very first tick,
    where `since_last_handled()` would swallow it."""

    @property
    def name(self) -> str:
        return "code_version_differs_from_latest_materialization"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:  # type: ignore[override]
        key = context.key
        current = context.asset_graph.get(key).code_version
        latest = context.asset_graph_view.instance.get_latest_materialization_code_versions([key]).get(key)
        fired_for = context.cursor
        drifted = current is not None and latest is not None and latest != current and current != fired_for
        subset = context.candidate_subset if drifted else context.get_empty_subset()
        return dg.AutomationResult(context, subset, cursor=current if drifted else fired_for)


def rebuild_on_change() -> dg.AutomationCondition:
    """Requested when the asset's own code version drifted, when an upstream updated, or when an upstream is
    requested in this same tick (so a recipe edit requests its whole subgraph at once, as one run); never while
    it or an upstream is in progress, and not when it or an upstream was never materialized (two studies share the
    tiny models' checkpoints: a demo run updating one must not start the other study's first builds)."""
    upstream = dg.AutomationCondition.any_deps_updated().since_last_handled() | dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.will_be_requested()
    )
    return (
        (upstream | CodeVersionDrift())
        & ~dg.AutomationCondition.missing()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("rebuild on change")


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    # Runs in the code server (the drift condition is project code), and is on by default: `dagster dev`
    # (its daemon) starts evaluating as soon as the UI is up.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # use_user_code_server: beta in 1.13, and required here
        return _sensor()


def _sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        SENSOR,
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        use_user_code_server=True,
        minimum_interval_seconds=60,
        description="Rebuilds exactly what a recipe, serving-profile or suite change touches, and re-evaluates "
        "endpoints and benchmarks when vllm/runtime observes a new vLLM build.",
    )


def automated(spec: dg.AssetSpec) -> dg.AssetSpec:
    """Every asset of the graph below the runtime: an owner for the UI, and the automation above."""
    return spec.replace_attributes(automation_condition=rebuild_on_change()).merge_attributes(owners=[OWNER])


def definitions() -> dg.Definitions:
    return dg.Definitions(sensors=[automation_sensor()])
