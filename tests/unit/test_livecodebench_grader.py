"""LiveCodeBench grading by the official grader's rules (lcb_runner/evaluation/testing_util.py), on realistic
answers. lcb_runner does not install from PyPI, so each expected verdict is what its rules give, written down
with the rule that decides it."""

from __future__ import annotations

import pytest

from quant_dag.evaluate.code import lcb_extract_code, score_livecodebench
from quant_dag.evaluate.sandbox import Limits
from tests.support.sandbox import needs_sandbox, sandbox  # noqa: F401 - the fixture needs_sandbox uses

F = "```"
SUM = [  # read n, then n integers; print their sum
    {"input": "3\n1 2 3", "output": "6", "testtype": "stdin"},
    {"input": "2\n10 -4\n", "output": "6\n", "testtype": "stdin"},
]
HALF = [{"input": "3", "output": "1.5", "testtype": "stdin"}, {"input": "4", "output": "2", "testtype": "stdin"}]
TWO_SUM = [
    {"input": "[2,7,11,15]\n9", "output": "[0, 1]", "testtype": "functional"},
    {"input": "[3,2,4]\n6", "output": "[1,2]", "testtype": "functional"},
    {"input": "[3,3]\n6", "output": "[0,1]", "testtype": "functional"},
]
SOLUTION = (
    "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        seen = {}\n"
    "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
    "                return [seen[target - x], i]\n            seen[x] = i\n"
)


def fenced(code: str, before: str = "Here is my solution.\n", after: str = "\nIt runs in O(n).") -> str:
    return f"{before}{F}python\n{code}\n{F}{after}"


# (case, answer, tests, fn_name, passes by the official rules)
CASES = [
    ("input()", fenced("n = int(input())\nprint(sum(map(int, input().split())))"), SUM, None, True),
    ("readline", fenced("import sys\nn = int(sys.stdin.readline())\nprint(sum(map(int, sys.stdin.readline().split())))"), SUM, None, True),
    ("read().split()", fenced("import sys\nd = sys.stdin.read().split()\nprint(sum(map(int, d[1:])))"), SUM, None, True),
    ("readlines", fenced("import sys\nls = sys.stdin.readlines()\nprint(sum(map(int, ls[1].split())))"), SUM, None, True),
    ("for line in stdin", fenced("import sys\nrows = [l for l in sys.stdin]\nprint(sum(map(int, rows[1].split())))"), SUM, None, True),
    # the prelude's `from builtins import *` binds the real open before the grader mocks builtins.open
    ("open(0)", fenced("d = open(0).read().split()\nprint(sum(map(int, d[1:])))"), SUM, None, False),
    ("input = readline", fenced("import sys\ninput = sys.stdin.readline\nn = int(input())\nprint(sum(map(int, input().split())))"), SUM, None, True),
    # stdin is a StringIO there: no .buffer, a runtime error
    ("stdin.buffer", fenced("import sys\nd = sys.stdin.buffer.read().split()\nprint(sum(map(int, d[1:])))"), SUM, None, False),
    ("main guard last", fenced("def main():\n    n = int(input())\n    print(sum(map(int, input().split())))\n\nif __name__ == '__main__':\n    main()"), SUM, None, True),
    ("main guard double quotes", fenced('def main():\n    input()\n    print(sum(map(int, input().split())))\nif __name__ == "__main__":\n    main()'), SUM, None, True),
    # a guard that is not the last statement is not un-nested, and the module is not __main__: no output
    ("main guard not last", fenced("def main():\n    input()\n    print(sum(map(int, input().split())))\nif __name__ == '__main__':\n    main()\nx = 1"), SUM, None, False),
    ("closure over a top-level constant", fenced("K = 0\ndef solve():\n    input()\n    return sum(map(int, input().split())) + K\nprint(solve())"), SUM, None, True),
    # everything is wrapped in one function: `global` then names a module global that does not exist
    ("global statement", fenced("total = 0\ndef add(v):\n    global total\n    total += v\ninput()\nfor v in map(int, input().split()):\n    add(v)\nprint(total)"), SUM, None, False),
    ("sys.exit after printing", fenced("import sys\ninput()\nprint(sum(map(int, input().split())))\nsys.exit(0)"), SUM, None, True),
    ("exit() after printing", fenced("input()\nprint(sum(map(int, input().split())))\nexit()"), SUM, None, True),
    ("raises", fenced("n = int(input())\nraise RuntimeError('bad')"), SUM, None, False),
    ("wrong", fenced("n = int(input())\nprint(n)"), SUM, None, False),
    ("extra line", fenced("input()\nprint(sum(map(int, input().split())))\nprint('done')"), SUM, None, False),
    ("trailing spaces and blank lines", fenced("input()\nprint(str(sum(map(int, input().split()))) + '   ')\nprint()\nprint()"), SUM, None, True),
    ("sys.stdout.write", fenced("import sys\ninput()\nsys.stdout.write(str(sum(map(int, input().split()))) + '\\n')"), SUM, None, True),
    ("prelude: Counter, no import", fenced("input()\nc = Counter(map(int, input().split()))\nprint(sum(k * v for k, v in c.items()))"), SUM, None, True),
    ("prelude: reduce and add, no import", fenced("input()\nprint(reduce(add, map(int, input().split())))"), SUM, None, True),
    ("float formats as decimals", fenced("n = int(input())\nprint(f'{n / 2:.2f}')"), HALF, None, True),  # 1.50 == 1.5, 2.00 == 2
    ("scientific notation", fenced("n = int(input())\nprint('%e' % (n / 2))"), HALF, None, True),
    ("rounded too far", fenced("n = int(input())\nprint(round(n / 2))"), HALF, None, False),
    ("word case", fenced("print('Yes' if int(input()) else 'No')"), [{"input": "1", "output": "YES", "testtype": "stdin"}], None, False),
    ("tokens, not spacing", fenced("print(*input().split()[::-1])"), [{"input": "1 2", "output": "2  1", "testtype": "stdin"}], None, True),
    ("deep recursion (limit 50000)", fenced("import sys\ndef d(k):\n    return 0 if k == 0 else 1 + d(k - 1)\nprint(d(int(input())))"), [{"input": "20000", "output": "20000", "testtype": "stdin"}], None, True),
    ("long integer output", fenced("print(10 ** int(input()))"), [{"input": "5000", "output": "1" + "0" * 5000, "testtype": "stdin"}], None, True),
    ("usage block after the code", fenced("n = int(input())\nprint(sum(map(int, input().split())))", after=f"\n\nExample:\n{F}\n3\n1 2 3\n{F}\nprints 6."), SUM, None, False),
    ("cut off inside the block", f"Here:\n{F}python\nn = int(input())\nprint(sum(map(int, input().split())))", SUM, None, False),
    ("no code", "I am not able to solve this problem.", SUM, None, False),
    ("no language tag", f"{F}\ninput()\nprint(sum(map(int, input().split())))\n{F}", SUM, None, True),
    ("syntax error", fenced("n = int(input()\nprint(n)"), SUM, None, False),
    ("functional: right", fenced(SOLUTION), TWO_SUM, "twoSum", True),
    ("functional: tuple for a list", fenced(SOLUTION.replace("[seen[target - x], i]", "(seen[target - x], i)")), TWO_SUM, "twoSum", True),
    ("functional: wrong order", fenced(SOLUTION.replace("[seen[target - x], i]", "[i, seen[target - x]]")), TWO_SUM, "twoSum", False),
    ("functional: other name", fenced(SOLUTION.replace("twoSum", "two_sum")), TWO_SUM, "twoSum", False),
    ("functional: a main block is never run", fenced(SOLUTION + "\nif __name__ == '__main__':\n    print(Solution().twoSum(list(map(int, input().split())), int(input())))"), TWO_SUM, "twoSum", True),
    ("functional: prints while solving", fenced(SOLUTION.replace("seen = {}", "seen = {}\n        print('debug', nums)")), TWO_SUM, "twoSum", True),
    ("functional: helper outside the class", fenced("def find(nums, target):\n    return [i for i in range(len(nums)) for j in range(i + 1, len(nums)) if nums[i] + nums[j] == target] + [j for i in range(len(nums)) for j in range(i + 1, len(nums)) if nums[i] + nums[j] == target]\n\nclass Solution:\n    def twoSum(self, nums, target):\n        return find(nums, target)"), TWO_SUM, "twoSum", True),
    ("functional: raises", fenced("class Solution:\n    def twoSum(self, nums, target):\n        return nums[100]"), TWO_SUM, "twoSum", False),
    ("functional: float equality is exact", fenced("class Solution:\n    def half(self, x):\n        return 0.1 + 0.2"), [{"input": "1", "output": "0.3", "testtype": "functional"}], "half", False),
]  # fmt: skip


def test_enough_cases():
    assert len(CASES) >= 40
    assert {passes for *_, passes in CASES} == {True, False}


def test_extraction_is_between_the_last_two_fence_lines():
    assert lcb_extract_code(f"a\n{F}python\nx = 1\n{F}\nb\n{F}\ny = 2\n{F}") == "y = 2"
    assert lcb_extract_code(f"{F}python\nx = 1") is None  # one fence: nothing
    assert lcb_extract_code("x = 1") is None


@needs_sandbox
@pytest.mark.parametrize("case", range(len(CASES)), ids=[c[0] for c in CASES])
def test_verdicts_follow_the_official_rules(case):
    name, answer, tests, fn_name, passes = CASES[case]
    res = score_livecodebench(answer, tests, fn_name)
    assert (res.score == 1.0) == passes, (name, res.detail)


@needs_sandbox
def test_time_limit_is_per_test_and_in_cpu_seconds():
    loop = fenced("class Solution:\n    def f(self, x):\n        while True:\n            pass")
    res = score_livecodebench(loop, [{"input": "1", "output": "1", "testtype": "functional"}], "f", timeout_s=1)
    assert res.score == 0.0 and res.detail == "test 1/1 (functional) time limit exceeded", res.detail
    # sleeping costs no CPU: the wall-clock bound of the whole run stops it instead
    sleeper = fenced("import time\ntime.sleep(30)\nprint(1)")
    res = score_livecodebench(sleeper, [{"input": "", "output": "1", "testtype": "stdin"}], None, timeout_s=1)
    assert res.score == 0.0 and "timeout" in res.detail, res.detail
    stdin_loop = fenced("while True:\n    pass")
    res = score_livecodebench(stdin_loop, SUM, None, timeout_s=1)
    assert res.detail == "test 1/2 (stdin) time limit exceeded", res.detail
    # the second test fails after the first passed: its own reason, and the count of those that passed
    second = fenced(
        "n = int(input())\nif n == 2:\n    while True:\n        pass\nprint(sum(map(int, input().split())))"
    )
    res = score_livecodebench(second, SUM, None, timeout_s=1)
    assert res.detail == "test 2/2 (stdin) time limit exceeded", res.detail
    crash2 = fenced("n = int(input())\nif n == 2:\n    raise KeyError('k')\nprint(sum(map(int, input().split())))")
    assert score_livecodebench(crash2, SUM, None).detail == "test 2/2 (stdin) runtime error: KeyError: 'k'"


# moved from test_sandbox.py
@needs_sandbox
def test_score_livecodebench_stdin():
    tests = [
        {"input": "1 2\n", "output": "3\n", "testtype": "stdin"},
        {"input": "10 -4\n", "output": "6  \n\n", "testtype": "stdin"},  # trailing whitespace is tolerated
    ]
    good = "```python\na, b = map(int, input().split())\nprint(a + b)   \n```"
    assert score_livecodebench(good, tests, None) == score_livecodebench(good, tests, None)  # deterministic
    res = score_livecodebench(good, tests, None)
    assert (res.score, res.detail) == (1.0, "2/2 tests passed")
    wrong = score_livecodebench("```python\na, b = map(int, input().split())\nprint(a * b)\n```", tests, None)
    assert wrong.score == 0.0 and wrong.detail.startswith("test 1/2 (stdin) wrong answer"), wrong
    crash = score_livecodebench("```python\nraise ValueError('boom')\n```", tests, None)
    assert crash.score == 0.0 and "ValueError: boom" in crash.detail
    spaced = score_livecodebench(
        "```python\nprint(' '.join(input().split()[::-1]))\n```",
        [{"input": "1 2", "output": "2  1", "testtype": "stdin"}],
        None,
    )
    assert spaced.score == 1.0  # LiveCodeBench compares a line's tokens, so "2 1" matches "2  1"
    assert score_livecodebench("no code here", tests, None).detail == "no code found"


@needs_sandbox
def test_score_livecodebench_functional():
    tests = TWO_SUM
    good = (
        "```python\nclass Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
        "        seen = {}\n"
        "        for i, x in enumerate(nums):\n"
        "            if target - x in seen:\n"
        "                return (seen[target - x], i)  # a tuple equals the expected list\n"
        "            seen[x] = i\n```"
    )
    res = score_livecodebench(good, tests, "twoSum")
    assert (res.score, res.detail) == (1.0, "3/3 tests passed")
    wrong = good.replace("return (seen[target - x], i)", "return [i, seen[target - x]]")
    res = score_livecodebench(wrong, tests, "twoSum")
    assert res.score == 0.0 and res.detail.startswith("test 1/3 (functional) wrong answer"), res
    res = score_livecodebench(good, tests, "threeSum")
    assert res.score == 0.0 and "no Solution().threeSum" in res.detail
    chatty = good.replace("seen = {}", "seen = {}\n        print('debug', nums)")  # prints do not confuse the harness
    assert score_livecodebench(chatty, tests, "twoSum").score == 1.0
    hang = good.replace("seen = {}", "while True: pass")
    res = score_livecodebench(hang, tests, "twoSum", limits=Limits(wall_s=1))
    assert res.score == 0.0 and "timeout" in res.detail
