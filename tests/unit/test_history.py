"""Results across vLLM builds: per-build history and the regression comparison, on hand-built journals."""

from __future__ import annotations

from quant_dag.evaluate.history import build_history, compare_with_previous_build


def rec(version: str, sample: int, score: float, t: float, mode: str = "thinking", finish: str = "stop") -> dict:
    return {
        "key": f"{version}-{mode}-{sample}", "vllm_version": version, "checkpoint_id": "recipe:x", "mode": mode,
        "sample_id": f"s{sample:02d}", "repeat": 0, "params_hash": "p", "prompt_hash": f"h{sample}",
        "dataset_revision": "d", "score": score, "finish_reason": finish, "error": None, "finished_at": t,
    }  # fmt: skip


def journal(*groups: list[dict]) -> dict[str, dict]:
    return {r["key"]: r for g in groups for r in g}


def test_history_keeps_every_build_and_matches_slots_only():
    old = [rec("0.11.0", i, 1.0, 100 + i) for i in range(20)]
    new = [
        rec("0.11.1.dev7", i, 1.0 if i < 15 else 0.0, 200 + i, finish="length" if i >= 18 else "stop")
        for i in range(20)
    ]
    other_params = [{**rec("0.10.0", i, 0.0, 50), "key": f"x{i}", "params_hash": "q"} for i in range(20)]
    h = build_history(journal(old, new, other_params), new, "0.11.1.dev7")
    assert h["vllm_version"].to_list() == ["0.11.0", "0.11.1.dev7"]  # 0.10.0 used other parameters: not comparable
    assert h["accuracy"].to_list() == [1.0, 0.75] and h["cutoff_rate"].to_list() == [0.0, 0.1]
    assert h["coverage"].to_list() == [1.0, 1.0] and h["current"].to_list() == [False, True]


def test_a_significant_drop_is_a_regression_naming_the_builds():
    old = [rec("0.11.0", i, 1.0, 100 + i) for i in range(20)]
    new = [rec("0.11.1.dev7", i, 1.0 if i < 10 else 0.0, 200 + i) for i in range(20)]  # 10 of 20 now wrong
    cmp = compare_with_previous_build(journal(old, new), new, "0.11.1.dev7")
    assert cmp.previous == "0.11.0"
    assert len(cmp.regressions) == 1 and "vLLM 0.11.1.dev7 vs 0.11.0" in cmp.regressions[0]
    assert "worse" in cmp.regressions[0] and "-50.0" in cmp.regressions[0]


def test_same_answers_or_no_earlier_build_is_no_regression():
    old = [rec("0.11.0", i, float(i % 2), 100 + i) for i in range(20)]
    same = [rec("0.11.1.dev7", i, float(i % 2), 200 + i) for i in range(20)]
    cmp = compare_with_previous_build(journal(old, same), same, "0.11.1.dev7")
    assert cmp.previous == "0.11.0" and cmp.regressions == [] and "no significant difference" in cmp.lines[0]
    first = compare_with_previous_build(journal(same), same, "0.11.1.dev7")
    assert first.previous is None and first.regressions == []


def test_a_partial_earlier_build_is_not_the_reference():
    partial = [rec("0.11.0", i, 1.0, 100 + i) for i in range(5)]  # answered 5 of 20 slots
    new = [rec("0.11.1.dev7", i, 0.0, 200 + i) for i in range(20)]
    assert compare_with_previous_build(journal(partial, new), new, "0.11.1.dev7").previous is None
