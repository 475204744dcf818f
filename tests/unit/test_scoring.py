"""Answer extraction and scoring on real-world model output formats, including outputs that must give nothing."""

from __future__ import annotations

import threading

import pytest

from quant_dag.evaluate.scoring import (
    NO_ANSWER,
    extract_choice,
    extract_choice_with_source,
    score_choice,
    score_math,
    score_sample,
    strip_think,
)
from quant_dag.evaluate.types import Sample

CAPITALS = ("London", "Paris", "Rome", "Berlin")


@pytest.mark.parametrize(
    "text, n, expected",
    [
        # MMLU-Pro's own format, and its variants
        ("Let's think step by step. Paris is the capital.\nThe answer is (B).", 4, "B"),
        ("so the answer is B", 4, "B"),
        ("The answer is (I).", 10, "I"),
        ("the answer is J", 10, "J"),
        ("Answer: B", 4, "B"),
        ("**Answer:** B", 4, "B"),
        ("**Answer**: C", 4, "C"),
        ("**Answer: C**", 4, "C"),
        ("Final answer: (C)", 4, "C"),
        ("Final Answer: The final answer is (D). I hope it is correct.", 4, "D"),
        ("answer is: **C**", 4, "C"),
        ("ANSWER: c", 4, "C"),
        ("answer is (b)", 4, "B"),
        ("Therefore, the correct answer is option C.", 4, "C"),
        ("The correct answer is **B) Paris**", 4, "B"),
        ("The answer is B because Paris is the capital.", 4, "B"),
        ("The answer is:\n\n**B**", 4, "B"),
        ("Answer:\n\nD", 4, "D"),
        ("**Answer: (C) 42**", 4, "C"),
        # boxes
        ("Thus \\boxed{D}", 4, "D"),
        ("$\\boxed{\\text{D}}$", 4, "D"),
        ("\\[\\boxed{(A)}\\]", 4, "A"),
        ("The final answer is \\boxed{\\textbf{(B)}}", 4, "B"),
        ("The answer is $\\boxed{D}$.", 4, "D"),
        ("The answer is \\(\\boxed{C}\\)", 4, "C"),
        # the last explicit statement wins
        ("The answer is (A). Wait, no: Rome is in Italy. The answer is (D).", 4, "D"),
        ("Let me check each answer: A is wrong, B is wrong.\nSo \\boxed{C}", 4, "C"),
        ("Answer: B\n\nExplanation: A is wrong because London is in England.", 4, "B"),
        # a reply that is only the option / whose last line is only the option
        ("B", 4, "B"),
        ("B.", 4, "B"),
        ("B) Paris", 4, "B"),
        ("(B) Paris", 4, "B"),
        ("Paris is the capital of France.\n\n(B) Paris", 4, "B"),
        ("**B**", 4, "B"),
        ("A", 4, "A"),
        ("Option C", 4, "C"),
        # thinking left in the content is ignored
        ("<think>The answer is (A)... no.</think>The answer is (C)", 4, "C"),
        ("I considered (A) and (B).</think>\nThe answer is (B).", 4, "B"),
        # negatives: prose, articles, pronouns, out-of-range letters, truncated thinking
        ("A good question. I think it is hard to say.", 4, None),
        ("A capital city is where the government sits.", 4, None),
        ("the answer is a bit subtle", 4, None),
        ("Answer: Because the question is ambiguous.", 4, None),
        ("Answer: A is wrong and so is B", 4, None),
        ("The answer is I think unclear", 10, None),
        ("The answer is (E).", 4, None),
        ("\\boxed{K}", 10, None),
        ("E) Madrid", 4, None),
        ("<think>The answer is (A), let me double check that", 4, None),
        ("", 4, None),
        ("\\boxed{a}", 4, None),  # a boxed variable, not an option
        ("\\boxed{A + B}", 4, None),
    ],
)
def test_extract_choice(text: str, n: int, expected: str | None) -> None:
    assert extract_choice(text, n) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I am fairly sure it is Paris.", "B"),  # only one option's text appears
        ("It is either Paris or Rome.", None),  # two options appear: ambiguous
        ("Parisian food is great.", None),  # whole words only
        ("Definitely Berlin\n", "D"),
        ("The answer is (A). It is Paris.", "A"),  # an explicit letter beats option text
    ],
)
def test_extract_choice_option_text(text: str, expected: str | None) -> None:
    assert extract_choice(text, 4, CAPITALS) == expected


def test_extract_choice_sources() -> None:
    assert extract_choice_with_source("The answer is (B)", 4) == ("B", "answer phrase")
    assert extract_choice_with_source("\\boxed{C}", 4) == ("C", "boxed")
    assert extract_choice_with_source("Hmm.\nD.", 4) == ("D", "final line")
    assert extract_choice_with_source("Rome", 4, CAPITALS) == ("C", "option text")
    assert extract_choice_with_source("no idea", 4) == (None, NO_ANSWER)


def test_extract_choice_rejects_bad_n() -> None:
    with pytest.raises(ValueError):
        extract_choice("A", 0)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>x</think>answer", "answer"),
        ("reasoning only</think>\n answer", "answer"),
        ("before <think>never closed", "before"),
        ("<think>a</think>b<think>c</think>d", "bd"),
        (None, ""),
    ],
)
def test_strip_think(text: str | None, expected: str) -> None:
    assert strip_think(text) == expected


def choice(reference: str, choices: tuple[str, ...] = CAPITALS) -> Sample:
    return Sample(id="q1", prompt="Capital of France?", reference=reference, kind="choice", choices=choices)


def test_score_choice() -> None:
    right = score_choice("The answer is (B).", choice("B"))
    assert (right.extracted, right.score) == ("B", 1.0) and "correct" in right.detail
    wrong = score_choice("The answer is (C).", choice("B"))
    assert (wrong.extracted, wrong.score) == ("C", 0.0) and "wrong" in wrong.detail
    none = score_choice("I cannot answer that.", choice("B"))
    assert (none.extracted, none.score, none.detail) == (None, 0.0, NO_ANSWER)
    # no listed choices: letters up to J are allowed (MMLU-Pro's most)
    assert score_choice("The answer is (H)", choice("H", ())).score == 1.0
    # a reference written "(C)" still compares as the letter
    assert score_choice("Answer: C", choice("(C)")).score == 1.0


def math(reference: str) -> Sample:
    return Sample(id="m1", prompt="?", reference=reference, kind="math")


@pytest.mark.parametrize(
    "text, gold, score",
    [
        ("\\boxed{070}", "70", 1.0),  # AIME zero padding
        ("\\boxed{71}", "70", 0.0),
        ("\\boxed{\\dfrac{14}{3}}", "\\frac{14}{3}", 1.0),
        ("The answer is 14/3", "\\frac{14}{3}", 1.0),
        # math-verify reads "14/3." as 14/3.0, a float, unequal to the fraction: its verdict, kept (agreement first)
        ("The answer is 14/3.", "\\frac{14}{3}", 0.0),
        ("The answer is 4.666...", "\\frac{14}{3}", 0.0),  # a truncated decimal is not the fraction
        ("The answer is $\\boxed{1,000}$", "1000", 1.0),
        ("\\boxed{10\\text{ cm}}", "10", 1.0),  # units dropped
        ("\\boxed{10\\%}", "10\\%", 1.0),
        ("\\boxed{\\text{(C)}}", "\\text{(C)}", 1.0),
        ("\\boxed{C}", "\\text{(C)}", 1.0),
        ("\\boxed{\\left(3, \\frac{\\pi}{2}\\right)}", "(3, \\frac{\\pi}{2})", 1.0),
        ("\\boxed{(3, \\frac{\\pi}{3})}", "(3, \\frac{\\pi}{2})", 0.0),
        ("\\boxed{3\\sqrt{2}}", "3\\sqrt2", 1.0),
        ("\\boxed{0.5}", "\\frac12", 1.0),
        ("\\boxed{x = 5}", "5", 1.0),
        ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", 1.0),
        ("Final Answer: The final answer is $\\frac{14}{3}$. I hope it is correct.", "\\frac{14}{3}", 1.0),
        ("so the probability is $\\dfrac{3}{8}$", "\\frac{3}{8}", 1.0),
        ("so the probability is $\\dfrac{3}{8}$", "8", 0.0),  # not the last digit of the fraction
        ("the area is $12\\pi$", "12", 0.0),
        ("Adding up: 5 + 7 = 12, so \\boxed{12", "12", 0.0),  # cut off inside the box
    ],
)
def test_score_math(text: str, gold: str, score: float) -> None:
    assert score_math(text, math(gold)).score == score


def test_score_math_no_answer() -> None:
    assert score_math("I could not solve it.", math("70")) == score_sample("I could not solve it.", math("70"))
    s = score_math("I could not solve it.", math("70"))
    assert (s.extracted, s.score, s.detail) == (None, 0.0, NO_ANSWER)


def test_score_math_in_worker_thread() -> None:
    """math_verify's signal-based timeout raises outside the main thread; scoring must still work there."""
    out: list = []
    errors: list = []

    def work() -> None:
        try:
            out.append(score_math("\\boxed{\\dfrac{14}{3}}", math("\\frac{14}{3}")).score)
        except Exception as exc:  # surfaced in the assertion below
            errors.append(exc)

    t = threading.Thread(target=work)
    t.start()
    t.join(60)
    assert errors == [] and out == [1.0]


def test_score_sample_dispatch() -> None:
    assert score_sample("The answer is (B)", choice("B")).score == 1.0
    assert score_sample("\\boxed{70}", math("70")).score == 1.0
    code = Sample(id="c1", prompt="def f", reference="{}", kind="code")
    with pytest.raises(NotImplementedError, match="quant_dag.evaluate.code"):
        score_sample("def f(): pass", code)
