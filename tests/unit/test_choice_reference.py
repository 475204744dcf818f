"""MMLU-Pro and GPQA answer extraction against the reference graders' own code, on realistic model answers.

Neither reference installs from PyPI, so their functions are copied here verbatim (the oracle), with where they
come from; the project's extractors are separate code that must agree with them on every answer.
"""

from __future__ import annotations

import re

import pytest

from quant_dag.evaluate.scoring import extract_mmlu_pro, extract_simple_evals, score_choice
from quant_dag.evaluate.types import Sample


# --- TIGER-AI-Lab/MMLU-Pro, evaluate_from_api.py (verbatim, print calls dropped) ---------------------------------
def mmlu_pro_extract_answer(text):
    pattern = r"answer is \(?([A-J])\)?"
    match = re.search(pattern, text)
    if match:
        return match.group(1)
    else:
        return mmlu_pro_extract_again(text)


def mmlu_pro_extract_again(text):
    match = re.search(r".*[aA]nswer:\s*([A-J])", text)
    if match:
        return match.group(1)
    else:
        return mmlu_pro_extract_final(text)


def mmlu_pro_extract_final(text):
    pattern = r"\b[A-J]\b(?!.*\b[A-J]\b)"
    match = re.search(pattern, text, re.DOTALL)
    if match:
        return match.group(0)
    else:
        return None


# --- openai/simple-evals, common.py + gpqa_eval.py (verbatim) -------------------------------------------------
ANSWER_PATTERN_MULTICHOICE = r"(?i)Answer[ \t]*:[ \t]*\$?([A-D])\$?"


def simple_evals_extract(response_text):
    match = re.search(ANSWER_PATTERN_MULTICHOICE, response_text)
    extracted_answer = match.group(1) if match else None
    return extracted_answer


ANSWERS = [
    "The answer is (B).",
    "Let's think step by step. Photosynthesis releases oxygen. The answer is (C).",
    "The answer is (B). Note: a common mistake is to conclude the answer is (E).",
    "The answer is E in this case.",
    "Answer: A is correct.",
    "Answer: C",
    "answer: c",
    "ANSWER: D",
    "Answer:B",
    "Answer: $D$",
    "**Answer:** B",
    "**Answer: C**",
    "The correct option is **option (C)**.",
    "I think it's 'B'.",
    'The answer is "D".',
    "After eliminating A and C, the answer is (D)",
    "A) is wrong because of X. B) is wrong because of Y. So the answer is C.",
    "Between A and B, I'd pick B.\n\nAnswer: B",
    "Answer: B\n\nWait, let me reconsider. Actually the answer is (D).",
    "The answer is (J).",
    "The answer is (K).",
    "the answer is (b)",
    "Final answer: \\boxed{C}",
    "$\\boxed{\\text{B}}$",
    "Option B: 42 J\nOption C: 24 J\nI choose C.",
    "None of the options match exactly; the closest is A.",
    "I'm not sure.",
    "",
    "Answer: \n\nB",
    "Answer:\tA",
    "Answer : D",
    "The answer is: (C)",
    "the answer is (A) or possibly (B)",
    "(A) 12\n(B) 13\n(C) 14\nThe result is 14, so C.",
    "Step 1: compute.\nStep 2: compare.\nTherefore, Answer: A\nDouble-checking... Answer: B",
    "The answer is \\(B\\).",
    "Answer: $\\mathrm{C}$",
    "So the final answer is D.",
    "I'd say the answer is likely B, but A is also plausible.",
    "answer is (F)",
    "Thus, answer: G",
    "<think>maybe A</think>The answer is (C).",
    "Answer: E",
]


def test_enough_realistic_answers():
    assert len(ANSWERS) >= 40


@pytest.mark.parametrize("text", ANSWERS)
def test_mmlu_pro_extraction_agrees_with_the_reference(text):
    visible = text.split("</think>")[-1].strip()  # the project scores the answer, never the reasoning
    assert extract_mmlu_pro(text)[0] == mmlu_pro_extract_answer(visible.replace("**", ""))  # single_request's own step


@pytest.mark.parametrize("text", ANSWERS)
def test_gpqa_extraction_agrees_with_the_reference(text):
    visible = text.split("</think>")[-1].strip()
    assert extract_simple_evals(text)[0] == simple_evals_extract(visible)


def test_the_cases_the_old_extractor_got_wrong():
    assert extract_mmlu_pro("The answer is (B). Note: a common mistake is to conclude the answer is (E).")[0] == "B"
    assert extract_mmlu_pro("The answer is E in this case.")[0] == "E"
    assert extract_mmlu_pro("Answer: A is correct.")[0] == "A"
    assert (
        extract_mmlu_pro("So the answer is **(D)**. The answer is (A) only if x > 0.")[0] == "D"
    )  # bold dropped first
    sample = Sample("1", "q", "B", "choice", choices=("x", "y", "z", "w"), meta={"extractor": "mmlu-pro"})
    assert score_choice("The answer is (B). Later: the answer is (E).", sample).score == 1.0
    gpqa = Sample("2", "q", "B", "choice", choices=("x", "y", "z", "w"), meta={"extractor": "simple-evals"})
    assert score_choice("Answer: b", gpqa).score == 0.0  # simple-evals compares the letter as written
    assert score_choice("Answer: B", gpqa).score == 1.0


def test_mmlu_pro_random_guess_is_an_option_and_still_counts_as_no_answer():
    choices = tuple("xyzwvutsrq")
    plain = Sample("7", "q", "C", "choice", choices=choices, meta={"extractor": "mmlu-pro"})
    assert score_choice("no idea.", plain).score == 0.0  # ("I don't know" gives I: a standalone capital A-J)
    guessing = Sample(
        "7", "q", "C", "choice", choices=choices, meta={"extractor": "mmlu-pro", "no_answer": "random-guess"}
    )
    scores = [score_choice(f"no idea ({i}).", guessing) for i in range(400)]
    assert all(s.extracted is None and s.detail.startswith("no answer found: random guess") for s in scores)
    assert 0.05 < sum(s.score for s in scores) / len(scores) < 0.16  # about one in ten options
    assert score_choice("no idea (1).", guessing) == scores[1]  # seeded: the same answer, the same guess
    assert score_choice("The answer is (C).", guessing).score == 1.0
