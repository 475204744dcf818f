"""Scoring for code benchmarks (HumanEval, LiveCodeBench): pull the code out of an answer and run it, with the
benchmark's tests, in quant_dag.evaluate.sandbox.

Nothing here runs code outside the sandbox: when the sandbox is unavailable, `run_python` raises
SandboxUnavailable and the scorers let it through, so the evaluator records an error, not a wrong answer.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from quant_dag.evaluate.sandbox import Limits, SandboxResult, run_python
from quant_dag.evaluate.types import Scored

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.DOTALL | re.MULTILINE)
_TAGS = {"python": {"python", "py", "python3"}}


def _trim_blank_lines(text: str) -> str:
    """Drop leading/trailing blank lines and trailing spaces, but keep the first line's indentation (a body
    continuation needs it)."""
    lines = text.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def extract_code(text: str, language: str = "python") -> str | None:
    """The code in a model's answer.

    1. The last fenced block tagged for `language` (python: python / py / python3); a fence left open at the end
       (answer cut off by max_tokens) runs to the end of the text.
    2. Else the last untagged fenced block.
    3. Else, with no fence at all: the whole text if it looks like code (contains "def " or "import ", or its
       first non-blank line is indented, as a completion model's function body is).
    Otherwise None. Blank lines around the code are trimmed; indentation is kept."""
    tags = _TAGS.get(language, {language})
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]
    for wanted in (lambda tag: tag in tags, lambda tag: tag == ""):
        chosen = [body for tag, body in blocks if wanted(tag)]
        if chosen:
            code = _trim_blank_lines(chosen[-1])
            return code if code.strip() else None
    if blocks:  # fenced, but only in other languages
        return None
    code = _trim_blank_lines(text)
    first = code.splitlines()[0] if code else ""
    if "def " in code or "import " in code or first[:1] in (" ", "\t"):
        return code
    return None


def _failure(res: SandboxResult) -> str:
    """A one-line reason for a failed run."""
    if res.timed_out:
        return "timeout"
    if res.output_truncated:
        return "output limit exceeded"
    lines = [line.strip() for line in res.stderr.splitlines() if line.strip()]
    if lines:
        return f"failed: {lines[-1][:300]}"
    return f"failed: exit code {res.returncode}"


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", code, re.MULTILINE) is not None


def score_humaneval(
    completion_text: str, prompt: str, test: str, entry_point: str, limits: Limits = Limits()
) -> Scored:
    """1.0 iff the answer passes the problem's `check`.

    An answer that defines `entry_point` (the usual chat answer: the whole function in a fence) runs after the
    prompt, so the prompt's imports and helper functions exist and the answer's definition replaces the prompt's
    docstring-only stub. Any other code is taken as the body that continues the prompt."""
    code = extract_code(completion_text)
    if code is None:
        return Scored(None, 0.0, "no code found")
    if _defines(code, entry_point):
        program = f"{prompt}\n\n{code}\n\n{test}\n\ncheck({entry_point})\n"
    else:
        program = f"{prompt}{code}\n\n{test}\n\ncheck({entry_point})\n"
    res = run_python(program, limits=limits)
    if res.ok:
        return Scored(code, 1.0, "passed")
    return Scored(code, 0.0, _failure(res))


# LiveCodeBench's harness puts these imports before a solution (lcb_runner/evaluation/testing_util.py), so
# solutions that use e.g. List or deque without importing them still run.
_LCB_PRELUDE = """\
from typing import *
from collections import *
from heapq import *
from bisect import *
from itertools import *
from functools import *
from math import *
import math, itertools, collections, heapq, bisect, re, functools, typing, string, sys, json
"""

_HARNESS = """
import json as _json, sys as _sys
def _run_tests():
    _tests = _json.loads({tests!r})
    try:
        _solution = Solution()
        _method = getattr(_solution, {func!r})
    except Exception as _exc:
        return {{"passed": 0, "detail": "no Solution().{func}: %r" % (_exc,)}}
    for _i, (_inp, _out) in enumerate(_tests):
        _args = [_json.loads(_line) for _line in _inp.split("\\n") if _line.strip()]
        _expected = _json.loads(_out)
        try:
            _got = _method(*_args)
        except Exception as _exc:
            return {{"passed": _i, "detail": "test %d/%d (functional) raised %r" % (_i + 1, len(_tests), _exc)}}
        if isinstance(_got, tuple):  # as LiveCodeBench compares: a tuple answer equals the JSON list
            _got = list(_got)
        if _got != _expected:
            return {{"passed": _i, "detail": "test %d/%d (functional) wrong answer: got %.100r, expected %.100r"
                    % (_i + 1, len(_tests), _got, _expected)}}
    return {{"passed": len(_tests), "detail": ""}}
_result = _run_tests()
_sys.stdout.flush()
print("\\n{marker}" + _json.dumps(_result), flush=True)
"""


def normalize_output(text: str) -> str:
    """Stdout as compared: trailing whitespace of each line and leading/trailing blank lines do not count."""
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def score_livecodebench(completion_text: str, tests: list[dict[str, Any]], func_name: str | None,
                        limits: Limits = Limits()) -> Scored:  # fmt: skip
    """1.0 only if every test passes; stops at the first failure.

    stdin tests ({"testtype": "stdin"}): one sandbox run per test, stdout compared after `normalize_output`.
    functional tests: the answer defines `class Solution` with method `func_name`; each input is one JSON value
    per line (the arguments), the output one JSON value. All functional tests run in one sandbox launch (so
    `limits` bound them together) through a harness that compares with ==."""
    code = extract_code(completion_text)
    if code is None:
        return Scored(None, 0.0, "no code found")
    if not tests:
        return Scored(code, 0.0, "no tests")
    n = len(tests)
    program = _LCB_PRELUDE + code
    functional = [(i, t) for i, t in enumerate(tests) if t.get("testtype") == "functional"]
    stdin_tests = [(i, t) for i, t in enumerate(tests) if t.get("testtype") != "functional"]
    passed = 0
    for i, t in stdin_tests:
        res = run_python(program, stdin=t["input"], limits=limits)
        if not res.ok:
            return Scored(code, 0.0, f"test {i + 1}/{n} (stdin) {_failure(res)}")
        if normalize_output(res.stdout) != normalize_output(t["output"]):
            got = normalize_output(res.stdout)[:100]
            return Scored(code, 0.0, f"test {i + 1}/{n} (stdin) wrong answer: got {got!r}")
        passed += 1
    if functional:
        if not func_name:
            return Scored(code, 0.0, "functional tests but no func_name")
        marker = f"@@lcb-result-{secrets.token_hex(8)} "
        pairs = json.dumps([[t["input"], t["output"]] for _, t in functional])
        res = run_python(program + "\n" + _HARNESS.format(tests=pairs, func=func_name, marker=marker), limits=limits)
        result = None
        for line in res.stdout.splitlines()[::-1]:
            if line.startswith(marker):
                result = json.loads(line[len(marker) :])
                break
        if result is None or not res.ok:
            return Scored(code, 0.0, f"functional tests {_failure(res) if not res.ok else 'failed: no result'}")
        if result["detail"]:
            return Scored(code, 0.0, result["detail"])
        passed += result["passed"]
    return Scored(code, 1.0 if passed == n else 0.0, f"{passed}/{n} tests passed")
