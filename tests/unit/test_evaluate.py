"""The evaluator against a deterministic stub server: fields, retries, concurrency, token fallback, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from quant_dag.evaluate.client import Endpoint
from quant_dag.evaluate.engine import SuitePlan, TokenCounter, evaluate, pick_concurrency, plan_modes
from quant_dag.evaluate.records import Journal
from quant_dag.evaluate.stats import aggregate
from quant_dag.evaluate.types import Sample
from quant_dag.home import REPO
from tests.support.evalchild import PROV, make_plan
from tests.support.stub_openai import Stub


def run(stub: Stub, plan: SuitePlan, journal: Path, **kw):
    kw.setdefault("thinking_switch", True)
    kw.setdefault("concurrency", 4)
    return evaluate(Endpoint(stub.base_url, "k", "model"), plan, PROV, journal, **kw)


STABLE = (
    "key",
    "mode",
    "sample_id",
    "repeat",
    "seed",
    "content",
    "reasoning",
    "finish_reason",
    "score",
    "extracted",
    "completion_tokens",
    "reasoning_tokens",
    "error",
)


def stable(records: list[dict]) -> list[tuple]:
    return sorted(tuple(r[c] for c in STABLE) for r in records)


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_both_reasoning_field_names_are_read(tmp_path, field):
    with Stub(reasoning_field=field) as stub:
        out = run(stub, make_plan(3, repeats=1), tmp_path / "j.jsonl")
    thinking = [r for r in out.records if r["mode"] == "thinking"]
    assert thinking and all(r["reasoning"].startswith("first think") for r in thinking)
    assert {r["reasoning_field"] for r in thinking} == {field}
    # the non-thinking requests carried enable_thinking=false and got no reasoning
    assert all(
        r["reasoning"] == "" and r["reasoning_field"] is None for r in out.records if r["mode"] == "non-thinking"
    )
    sent = {json.dumps(r.get("chat_template_kwargs")) for r in stub.requests}
    assert sent == {'{"enable_thinking": true}', '{"enable_thinking": false}'}


def test_records_carry_what_the_issue_asks_and_scores_are_right(tmp_path):
    with Stub() as stub:
        out = run(stub, make_plan(6, repeats=2), tmp_path / "j.jsonl")
    assert len(out.records) == 6 * 2 * 2 and out.sent == 24 and out.reused == 0
    for r in out.records:
        assert (
            r["vllm_version"] == "0.0-test" and r["checkpoint_id"] == "recipe:abc" and r["dataset_revision"] == "toy-v1"
        )
        assert r["asset_key"] == "benchmark/m/v/toy" and r["run_id"] == "r1"
        assert r["prompt_hash"] and r["params_hash"] and r["latency_s"] >= 0 and r["finish_reason"] == "stop"
        assert json.loads(r["params"])["seed"] == 7 + r["repeat"]
        # the stub answers \boxed{2i} unless its hash says otherwise: the score must follow the content
        right = f"\\boxed{{{r['reference']}}}" in r["content"]
        assert r["score"] == (1.0 if right else 0.0), r
    assert {r["score"] for r in out.records} == {0.0, 1.0}  # both outcomes occur, so the check above bites


def test_length_finish_counts_as_cutoff(tmp_path):
    plan = make_plan(4, repeats=1, modes=(False,))
    plan.samples[1] = Sample(id="s001", prompt="LONG item 1: 1 + 1 = 2", reference="2", kind="math")
    with Stub() as stub:
        out = run(stub, plan, tmp_path / "j.jsonl")
    agg = aggregate(out.records)
    assert [r["finish_reason"] for r in out.records].count("length") == 1
    assert agg["cutoff_rate"] == pytest.approx(0.25)


def test_token_count_fallback_uses_the_tokenizer(tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    vocab = {"[UNK]": 0}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = WhitespaceSplit()
    tok.save(str(tmp_path / "tokenizer.json"))
    count = TokenCounter(tmp_path)
    with Stub(usage=False) as stub:
        out = run(stub, make_plan(3, repeats=1), tmp_path / "j.jsonl", count=count)
    for r in out.records:
        assert r["token_source"] == "tokenizer"
        words = len(r["content"].split()) + len(r["reasoning"].split())
        assert r["completion_tokens"] == words and r["reasoning_tokens"] == len(r["reasoning"].split())
        assert r["prompt_tokens"] == len("item x: 1 + 1 = 2".split())
    with Stub(usage=True) as stub:  # usage without a reasoning breakdown: only the reasoning is counted
        out = run(stub, make_plan(3, repeats=1), tmp_path / "k.jsonl", count=count)
    thinking = [r for r in out.records if r["mode"] == "thinking"]
    assert all(
        r["token_source"] == "server+tokenizer" and r["reasoning_tokens"] == len(r["reasoning"].split())
        for r in thinking
    )


def test_retries_transient_errors_and_keeps_client_errors(tmp_path):
    plan = make_plan(3, repeats=1, modes=(False,))
    plan.samples[0] = Sample(id="s000", prompt="FLAKY item 0: 0 + 0 = 0", reference="0", kind="math")
    plan.samples[1] = Sample(id="s001", prompt="BAD item 1: 1 + 1 = 2", reference="2", kind="math")
    with Stub() as stub:
        out = run(stub, plan, tmp_path / "j.jsonl")
        flaky, bad = out.records[0], out.records[1]
        assert flaky["error"] is None and flaky["attempts"] == 2
        assert bad["error"].startswith("HTTP 400") and "maximum context length" in bad["error"] and bad["attempts"] == 1
        # an errored sample is not done: the next run retries it, and only it
        again = run(stub, plan, tmp_path / "j.jsonl")
    assert again.sent == 1 and again.reused == 2


def test_concurrency_is_bounded(tmp_path):
    with Stub(delay_s=0.05) as stub:
        run(stub, make_plan(10, repeats=2), tmp_path / "j.jsonl", concurrency=3)
    assert stub.max_in_flight == 3


def test_slow_scoring_never_stalls_request_dispatch(tmp_path, monkeypatch):
    # Each answer's scoring waits until the server has seen every request: on the event loop that would never
    # happen (the loop would be stuck in the first scorer); in a worker thread, dispatch goes on.
    import dataclasses

    from quant_dag.evaluate import engine
    from quant_dag.evaluate.types import Scored

    n = 12
    samples = [
        Sample(id=f"c{i}", prompt=f"pick {i}", reference="A", kind="choice", choices=("w", "x", "y", "z"))
        for i in range(n)
    ]
    plan = dataclasses.replace(make_plan(1, repeats=1, modes=(False,)), task="basic_mc", samples=samples)
    with Stub() as stub:

        def waiting_score(task: str, sample: Sample, content: str) -> Scored:
            deadline = time.monotonic() + 15
            while len(stub.requests) < n:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {len(stub.requests)} of {n} requests were sent while scoring waited")
                time.sleep(0.01)
            return Scored("A", 1.0, "correct")

        monkeypatch.setattr(engine, "score", waiting_score)
        out = run(stub, plan, tmp_path / "j.jsonl", concurrency=3)
    assert [r["error"] for r in out.records] == [None] * n and all(r["score"] == 1.0 for r in out.records)
    assert len(Journal(tmp_path / "j.jsonl").read()) == n  # every record journaled


def test_a_math_answer_sympy_cannot_finish_neither_stalls_dispatch_nor_hangs(tmp_path):
    # A power tower: sympy would evaluate 9^(9^(9^9)) for ever. math_verify bounds it with signal.alarm, which works
    # only in a main thread: the evaluator scores math in worker processes, so the answer is scored 0 at the limit
    # and, meanwhile, every other request is sent and scored.
    import dataclasses

    n = 8
    tower = Sample(id="m0", prompt="TOWER", reference="5", kind="math")
    rest = [
        Sample(id=f"m{i}", prompt=f"item {i}: {i} + 1 = {i + 1}", reference=str(i + 1), kind="math")
        for i in range(1, n)
    ]
    plan = dataclasses.replace(make_plan(1, repeats=1, modes=(False,)), samples=[tower, *rest])
    with Stub(answers={"TOWER": "So the answer is \\boxed{9^{9^{9^{9}}}}."}) as stub:
        out = run(stub, plan, tmp_path / "j.jsonl", concurrency=2)
    slow = out.records[0]
    assert slow["error"] is None and slow["extracted"] == "9^{9^{9^{9}}}" and slow["score"] == 0.0
    # dispatch went on while the tower was being scored: every other answer finished before it
    assert all(r["finished_at"] < slow["finished_at"] for r in out.records[1:])
    assert all(r["error"] is None and r["score"] == float(r["extracted"] == r["reference"]) for r in out.records[1:])
    assert len(stub.requests) == n


def test_changed_parameters_never_reuse_old_samples(tmp_path):
    journal = tmp_path / "j.jsonl"
    with Stub() as stub:
        first = run(stub, make_plan(4), journal)
        same = run(stub, make_plan(4), journal)
        hotter = run(stub, make_plan(4, temperature=1.0), journal)
        other_data = make_plan(4)
        other_data.dataset_revision = "toy-v2"
        moved = run(stub, other_data, journal)
    assert (first.sent, same.sent, same.reused) == (16, 0, 16)
    assert hotter.sent == 16 and hotter.reused == 0
    assert moved.sent == 16 and moved.reused == 0
    assert stable(same.records) == stable(first.records)


def test_resume_after_kill_loses_and_duplicates_nothing(tmp_path):
    n = 30  # 30 samples x 2 modes x 2 repeats = 120 requests, 0.05 s each at concurrency 4: ~1.5 s uninterrupted
    proc_stub = subprocess.Popen(
        [sys.executable, "-m", "tests.support.stub_openai", "--delay", "0.05"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc_stub.stdout.readline().strip()
        journal = tmp_path / "killed.jsonl"
        child = subprocess.Popen([sys.executable, "-m", "tests.support.evalchild", str(journal), url, str(n)], cwd=REPO)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not journal.exists() or journal.read_text().count("\n") < 40):
            time.sleep(0.01)
        scorers = psutil.Process(child.pid).children(recursive=True)  # the math scoring workers
        assert scorers, "the evaluator scores math in worker processes"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        _, alive = psutil.wait_procs(scorers, timeout=30)
        assert not alive, f"scoring workers outlived the killed evaluator: {alive}"
        before = journal.read_bytes().count(b"\n")
        assert 40 <= before < 120, before
        with open(journal, "ab") as fh:  # a kill mid-write leaves a torn line: it must not break the resume
            fh.write(b'{"key": "torn')
        resumed = subprocess.run(
            [sys.executable, "-m", "tests.support.evalchild", str(journal), url, str(n)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        assert f"sent={120 - before} reused={before} records=120" in resumed.stdout
        clean = tmp_path / "clean.jsonl"
        subprocess.run(
            [sys.executable, "-m", "tests.support.evalchild", str(clean), url, str(n)],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
    finally:
        proc_stub.kill()
    with Journal(journal) as j:
        killed_then_resumed = list(j.read().values())
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(lines) == 120 and len({r["key"] for r in lines}) == 120  # no duplicate, torn line cut away
    with Journal(clean) as j:
        uninterrupted = list(j.read().values())
    assert stable(killed_then_resumed) == stable(uninterrupted)


def test_modes_without_a_thinking_switch():
    assert plan_modes((True, False), switch=True) == ([("thinking", True), ("non-thinking", False)], [])
    modes, notes = plan_modes((True, False), switch=False)
    assert modes == [("default", None)] and "no enable_thinking switch" in notes[0]
    assert plan_modes((False,), switch=False) == ([("default", None)], [])


def test_concurrency_follows_the_server_capacity():
    assert pick_concurrency(None, 22.75) == 22
    assert pick_concurrency(5, 22.75) == 5
    assert pick_concurrency(None, 500.0) == 64
    assert pick_concurrency(None, None) == 8


def test_without_request_seeds_records_claim_none_and_repeats_stay_apart(tmp_path):
    plan = make_plan(3, repeats=2, modes=(False,))
    plan.send_seed = False
    with Stub() as stub:
        out = run(stub, plan, tmp_path / "j.jsonl")
    assert all("seed" not in r for r in stub.requests)
    assert all(r["seed"] is None and "seed" not in json.loads(r["params"]) for r in out.records)
    assert len({r["key"] for r in out.records}) == 6  # (sample, repeat) still one key each


def test_benchmark_summary_writes_the_same_keys_and_reads_older_files():
    from quant_dag.evaluate.types import BenchmarkSummary, Builds

    base = {"benchmark": "b", "task": "arithmetic", "model": "m", "variant": "v", "grader": "g", "differences": ["d"]}
    base |= {"dataset_revision": "r", "checkpoint_id": "c", "vllm_version": "0.0", "run_id": "run"}
    base |= {"asset_key": "benchmark/m/v/b", "generation": "{}"}
    skipped = BenchmarkSummary(**base, evaluated=False, reason="not servable here: x")
    assert set(skipped.to_dict()) == {*base, "evaluated", "reason", "modes", "planned", "errors", "aggregates"}
    aggregates = [{"mode": "default", "accuracy": 0.5}]
    ran = BenchmarkSummary(**base, evaluated=True, modes=["default"], planned=2, sent=2, aggregates=aggregates)
    ran.builds = Builds(history_file="h")
    written = ran.to_dict()
    run_keys = {"mode_notes", "sent", "reused", "wall_s", "concurrency", "output_tokens_per_s", "records", "journal"}
    run_keys |= {"aggregates_file", "builds"}
    assert set(written) == {*base, "evaluated", "modes", "planned", "errors", "aggregates"} | run_keys
    assert written["builds"] == {"previous": None, "regressions": [], "lines": [], "history": [], "history_file": "h"}
    assert BenchmarkSummary.from_json(ran.to_json()) == ran and BenchmarkSummary.from_json(skipped.to_json()) == skipped
    # an older summary.json (no grader, no builds) and a newer one (a key this code does not know) both read
    old = BenchmarkSummary.from_json(json.dumps({"benchmark": "b", "evaluated": False, "reason": "r", "extra": 1}))
    assert (old.grader, old.differences, old.builds, old.sent, old.planned) == ("", [], None, 0, 0)
