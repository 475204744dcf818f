"""Subprocesses with structured output, and atomic directory writes.

Heavy work (torch, AutoRound, vLLM) runs in child processes so the Dagster code location stays light.
A child prints ordinary log lines plus event lines `@@quant-dag {json}`; the parent streams the logs
and collects the events. Children die with their parent (PR_SET_PDEATHSIG) and are killed as a
process group on any exit path of the parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

EVENT_PREFIX = "@@quant-dag "


def emit(event: str, **fields: object) -> None:
    """Print one structured event for the parent process (child side)."""
    print(EVENT_PREFIX + json.dumps({"event": event, **fields}, default=str), flush=True)


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temp folder beside `dest`; rename it to `dest` only if the block succeeds.

    A killed run leaves a `.tmp-*` folder, never something at `dest` that looks complete.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(dest)
    tmp = dest.parent / f".tmp-{dest.name}-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if dest.exists():
            old = dest.parent / f".old-{dest.name}-{time.time_ns()}"
            dest.rename(old)
        tmp.rename(dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] = lambda: None) -> Iterator[None]:
    """An exclusive flock on `path` (created if missing), held for the block; the kernel drops it if we die.

    `on_wait` is called once if another process holds it (to say why a step is idle).
    """
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# Machine-wide, not per project home: two demos or a demo and the tests on one machine share the same cores.
CPU_WORK_LOCK = Path(tempfile.gettempdir()) / "quant-dag-cpu-work.lock"


def cpu_work(on_wait: Callable[[], None] = lambda: None) -> contextlib.AbstractContextManager[None]:
    """Held by CPU-bound torch work (training a demo model, AutoRound on the CPU): one at a time per machine.

    Dagster runs several steps at once; two torch jobs each sized for all cores thrash (a 2-minute training took
    18 minutes next to an AutoRound run on 2 cores), while one after the other both finish sooner. Serving and
    scoring are not held back by it.
    """
    return file_lock(CPU_WORK_LOCK, on_wait)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(dest: Path) -> None:
    """Temp folders that a killed run left beside `dest` (their writer is gone)."""
    prefix = f".tmp-{dest.name}-"
    for tmp in dest.parent.glob(prefix + "*"):
        pid = tmp.name[len(prefix) :].split("-")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


class _HideModules:
    """A meta-path finder that makes importing the named packages fail."""

    def __init__(self, *names: str):
        self.names = names

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.split(".")[0] in self.names:
            raise ImportError(f"{fullname} hidden by quant-dag")
        return None


def hide_modules(*names: str) -> None:
    """Make `import <name>` fail in this process from now on, so transformers takes its torch path (call it before
    transformers is imported: it checks the kernels' packages once, at import)."""
    sys.meta_path.insert(0, _HideModules(*names))


def write_json_atomic(path: Path, payload: object) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies, even by kill -9 (Linux only)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(sig))  # PR_SET_PDEATHSIG


@dataclass
class ChildResult:
    returncode: int
    events: list[dict] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)  # last log lines, for error messages
    wall_s: float = 0.0
    peak_rss_bytes: int = 0

    def last(self, event: str) -> dict | None:
        return next((e for e in reversed(self.events) if e.get("event") == event), None)


class ChildFailed(RuntimeError):
    def __init__(self, what: str, result: ChildResult):
        self.result = result
        tail = "\n".join(result.tail[-25:])
        super().__init__(f"{what} failed with exit status {result.returncode}; last output:\n{tail}")


def python_module(module: str, *args: str, python: str | None = None) -> list[str]:
    return [python or sys.executable, "-u", "-m", module, *args]


def run_child(
    cmd: list[str],
    *,
    on_log: Callable[[str], None] = lambda line: None,
    on_event: Callable[[dict], None] = lambda ev: None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    what: str = "subprocess",
    tail_lines: int = 200,
) -> ChildResult:
    """Run `cmd`, stream its output line by line, and return its events; raise ChildFailed on failure."""
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        bufsize=1,
        env=full_env,
        cwd=cwd,
        start_new_session=True,  # its own process group, so we can kill what it spawned too
        preexec_fn=die_with_parent,
    )
    result = ChildResult(returncode=-1)
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            if line.startswith(EVENT_PREFIX):
                try:
                    event = json.loads(line[len(EVENT_PREFIX) :])
                except json.JSONDecodeError:
                    event = None
                if event is not None:
                    result.events.append(event)
                    on_event(event)
                    continue
            result.tail.append(line)
            del result.tail[:-tail_lines]
            on_log(line)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = result.returncode = os.waitstatus_to_exitcode(status)
        result.peak_rss_bytes = usage.ru_maxrss * 1024  # Linux reports KiB
    finally:
        kill_group(proc)
        result.wall_s = time.monotonic() - start
    if result.returncode != 0:
        raise ChildFailed(what, result)
    return result


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the child's process group, then SIGKILL whatever is left after a grace period."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    if proc.returncode is None:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=5)


def ancestor_named(name: str) -> int | None:
    """The pid of this process's nearest ancestor whose process name is `name` (e.g. Ray's `raylet`), or None."""
    import psutil

    for proc in psutil.Process().parents():
        with contextlib.suppress(psutil.Error):
            if proc.name() == name:
                return proc.pid
    return None


class StepStopped(Exception):
    """Raised in a step's main thread by `watch_step`: the step fails with this message as its error."""


def _raise_in_main_thread(reason: str) -> None:
    """Raise StepStopped(reason) in the main thread, at its next Python instruction."""
    exc = type("StepStopped", (StepStopped,), {"__init__": lambda self: StepStopped.__init__(self, reason)})
    main = threading.main_thread().ident
    if main is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(main), ctypes.py_object(exc))


def watch_step(
    *,
    node_pid: int | None,
    timeout_s: float | None,
    on_fire: Callable[[str], None],
    poll_s: float = 1.0,
    grace_s: float = 20.0,
) -> threading.Thread | None:
    """Stop this process's step when the node daemon `node_pid` exits (a lost cluster node leaves its steps
    running otherwise: seen with Ray 2.60, a killed raylet left its jobs' processes alive) or when the step has run
    `timeout_s`. `on_fire` gets the reason first; then StepStopped(reason) is raised in the main thread, so the
    step fails with the reason as its error and its `with` blocks stop what they started (the vLLM server); a
    process still alive `grace_s` later (the main thread stuck in a call) gets SIGTERM, and SIGKILL `grace_s` after
    that (a SIGTERM ignored by an inherited disposition was seen in a test run). None when there is nothing to
    watch."""
    if node_pid is None and timeout_s is None:
        return None
    deadline = time.monotonic() + timeout_s if timeout_s is not None else None

    def loop() -> None:
        while True:
            time.sleep(poll_s)
            if node_pid is not None and not _pid_alive(node_pid):
                reason = f"the cluster node running this step was lost (its raylet, pid {node_pid}, exited)"
            elif deadline is not None and time.monotonic() > deadline:
                reason = f"the step ran longer than the profile's cluster.step_timeout_s ({timeout_s:g} s)"
            else:
                continue
            on_fire(reason)
            _raise_in_main_thread(reason)
            time.sleep(grace_s)
            # the main thread is stuck: SIGTERM (deliverable to this thread even where an inherited mask blocks it
            # elsewhere), then SIGKILL if it is ignored; the vLLM guard takes the server down either way
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(grace_s)
            os.kill(os.getpid(), signal.SIGKILL)
            return

    thread = threading.Thread(target=loop, name="quant-dag-step-watchdog", daemon=True)
    thread.start()
    return thread
