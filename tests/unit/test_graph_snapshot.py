"""The whole asset graph of the shipped catalog, snapshotted: any change to keys, dependencies, groups, kinds,
checks, pools or automation shows in review as a diff of tests/data/graph-snapshot.json.

Code versions are left out (they hash installed versions of AutoRound and vLLM). After an intended change:
`QUANT_DAG_UPDATE_SNAPSHOT=1 python -m pytest tests/unit/test_graph_snapshot.py` rewrites the file.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

from quant_dag.definitions import build_definitions

SNAPSHOT = Path(__file__).parents[1] / "data" / "graph-snapshot.json"


def graph_snapshot() -> dict[str, object]:
    defs = build_definitions(home=Path("/nonexistent-home"))
    checks: dict[str, list[str]] = {}
    for c in defs.asset_checks or []:
        for spec in c.check_specs:
            checks.setdefault(spec.asset_key.to_user_string(), []).append(f"{spec.name}{' (blocking)' * spec.blocking}")
    for a in defs.assets or []:
        for spec in getattr(a, "check_specs", ()):
            checks.setdefault(spec.asset_key.to_user_string(), []).append(f"{spec.name}{' (blocking)' * spec.blocking}")
    assets: dict[str, object] = {}
    for spec in defs.resolve_all_asset_specs():
        key = spec.key.to_user_string()
        condition = spec.automation_condition
        assets[key] = {
            "deps": sorted(d.asset_key.to_user_string() for d in spec.deps),
            "group": spec.group_name,
            "kinds": sorted(spec.kinds),
            "owners": list(spec.owners),
            "automation": condition.get_label() if condition is not None else None,
            "checks": sorted(checks.get(key, [])),
        }
    repo = defs.get_repository_def()
    return {
        "assets": dict(sorted(assets.items())),
        "jobs": sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")),
        "schedules": sorted(s.name for s in repo.schedule_defs),
        "sensors": sorted(s.name for s in repo.sensor_defs),
    }


def test_the_asset_graph_matches_its_snapshot():
    got = json.dumps(graph_snapshot(), indent=1, sort_keys=True) + "\n"
    if os.environ.get("QUANT_DAG_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(got)
    want = SNAPSHOT.read_text()
    diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), "snapshot", "now", n=2))
    assert got == want, (
        f"the asset graph changed (rewrite with QUANT_DAG_UPDATE_SNAPSHOT=1 if intended):\n{diff[:6000]}"
    )
