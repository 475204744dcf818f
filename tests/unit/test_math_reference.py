"""Math scoring against math-verify as its authors use it: `verify(parse(gold), parse(answer))`, on realistic model
answers (thinking traces, self-corrections, afterwords, markdown, refusals, truncations).

The project scores with math-verify's own extraction, so the two agree by design; this pins that down, and the two
deliberate differences below are tested on their own: reasoning is never scored, and a reply cut off inside its
last box has no answer.
"""

from __future__ import annotations

import pytest
from math_verify import parse, verify

from quant_dag.evaluate.scoring import NO_ANSWER, score_math
from quant_dag.evaluate.types import Sample

# (the model's answer, the dataset's gold answer)
ANSWERS = [
    ("So the total is \\boxed{70}.", "70"),
    ("The sum is 3 + 4 = 7.\n\nFinal answer: \\boxed{7}", "7"),
    ("Therefore, the answer is $\\boxed{\\frac{14}{3}}$.", "\\frac{14}{3}"),
    ("We find $x = \\frac{3}{8}$.", "\\frac{3}{8}"),
    ("The probability is $\\dfrac{3}{8}$.", "\\frac{3}{8}"),
    ("The probability is $\\dfrac{3}{8}$.", "8"),
    ("The area is $12\\pi$ square units.", "12\\pi"),
    ("The area is $12\\pi$ square units.", "12"),
    ("The answer is 42.", "42"),
    ("**Answer:** 42", "42"),
    ("Answer: $\\sqrt{2}/2$", "\\frac{\\sqrt{2}}{2}"),
    ("The roots are $x = 2$ and $x = -3$, so \\boxed{2, -3}.", "2, -3"),
    ("The roots are \\boxed{2} and \\boxed{-3}.", "2, -3"),
    ("So the answer is \\boxed{070}.", "70"),
    ("Initially I thought \\boxed{12}, but rechecking, the count is \\boxed{14}.", "14"),
    ("Let me verify: 5*5=25. Yes. \\[\\boxed{25}\\]", "25"),
    ("Thus $n = 1000$.", "1000"),
    ("Thus $n = 1,000$.", "1000"),
    ("The final answer is $\\boxed{(3, \\frac{\\pi}{2})}$.", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\boxed{10\\%}", "10\\%"),
    ("The answer is 10%.", "10\\%"),
    ("So there are 5 apples and 7 oranges, 12 fruits in total.", "12"),
    ("So there are 5 apples and 7 oranges, 12 fruits in total. I hope this helps!", "12"),
    ("I'm not sure how to solve this problem.", "5"),
    ("I can't help with that.", "3"),
    ("Step 1: expand. Step 2: collect terms. Step 3: the value is", "4"),  # cut off mid-sentence
    ("The answer is \\boxed{\\text{(C)}}.", "\\text{(C)}"),
    ("\\boxed{C}", "\\text{(C)}"),
    ("The length is \\boxed{10 \\text{ cm}}.", "10"),
    ("Hence $\\boxed{x^2 + 2x + 1}$.", "(x+1)^2"),
    ("We get $\\boxed{0.5}$.", "\\frac{1}{2}"),
    ("The interval is $[2, 5)$.", "[2,5)"),
    ("So $a+b = \\boxed{9}$. Note that $a=4$.", "9"),
    ("**Final Answer**\n\\[\n\\boxed{204}\n\\]", "204"),
    ("The answer: 7/2", "\\frac{7}{2}"),
    ("Final Answer: The final answer is $5$. I hope it is correct.", "5"),
    ("It equals $2^{10} = 1024$.", "1024"),
    ("It equals 1024, which is $2^{10}$.", "1024"),
    ("The minimum value is $-\\frac{1}{4}$.", "-\\frac{1}{4}"),
    ("So, $\\theta = 45^\\circ$.", "45"),
    ("Hence the answer is $\\boxed{\\sqrt{3}}$", "\\sqrt{3}"),
    ("So $x \\in \\{1, 2, 3\\}$, i.e. \\boxed{\\{1,2,3\\}}", "\\{1,2,3\\}"),
    ("The final answer is 3. (Answer: 3)", "3"),
    ("He has $\\$18$ left, so \\boxed{18}.", "18"),
    ("The answer is \\boxed{\\frac{1}{2}} or equivalently 0.5.", "\\frac12"),
    ("There are $\\binom{5}{2}=10$ ways.", "10"),
    ("\\boxed{5} is wrong; the correct value is 6.", "6"),
    ("## Solution\n\n1. Factor: $(x-2)(x+3)=0$.\n2. Roots: $x=2, x=-3$.\n\n**Answer:** $\\boxed{-3, 2}$", "2, -3"),
    ("<think>Maybe 11? No: 3*4 = 12.</think>\nThe product is \\boxed{12}.", "12"),
    ("<think>The answer is \\boxed{11}.</think>\nActually the product is 12, so \\boxed{12}.", "11"),
    ("<think>compute... 2+2=4</think>\n\n$4$", "4"),
    ("The answer is $\\boxed{\\textbf{(B) } 6}$", "6"),
    ("Thus $m+n = 17 + 4 = \\boxed{021}$.", "21"),
    ("The answer is \\boxed{\\infty}.", "\\infty"),
]


def reference(text: str, gold: str) -> float:
    """math-verify's verdict on the answer the project scores (after any reasoning, never the reasoning)."""
    visible = text.split("</think>")[-1].strip()
    return float(bool(verify(parse(f"\\boxed{{{gold}}}"), parse(visible))))


def test_enough_realistic_answers():
    assert len(ANSWERS) >= 40
    assert {reference(t, g) for t, g in ANSWERS} == {0.0, 1.0}  # both verdicts occur, so agreement means something


@pytest.mark.parametrize("text, gold", ANSWERS)
def test_agrees_with_math_verify(text: str, gold: str) -> None:
    assert score_math(text, Sample("m", "?", gold, "math")).score == reference(text, gold)


@pytest.mark.parametrize(
    "text, gold",
    [
        ("Adding up: 5 + 7 = 12, so \\boxed{12", "12"),
        ("The count is 12, that is \\boxed{1", "12"),
        ("So the answer is $\\frac{3}{8}$, i.e. \\boxed{\\frac{3}{", "\\frac{3}{8}"),
        ("so $x = 3$ and hence \\boxed{3", "3"),
    ],
)
def test_named_difference_a_reply_cut_off_inside_its_box_has_no_answer(text: str, gold: str) -> None:
    # math-verify takes a number from before the cut; the project does not score an unfinished answer
    assert reference(text, gold) == 1.0
    scored = score_math(text, Sample("m", "?", gold, "math"))
    assert (scored.extracted, scored.score, scored.detail) == (None, 0.0, NO_ANSWER)


def test_named_difference_the_reasoning_is_never_scored() -> None:
    # an answer that exists only inside the reasoning: math-verify on the whole text would find it
    text = "<think>so it is \\boxed{7}</think>I am not certain of the result."
    assert float(bool(verify(parse("\\boxed{7}"), parse(text)))) == 1.0
    assert score_math(text, Sample("m", "?", "7", "math")).score == 0.0
