"""GPU inventory and leases, without importing torch.

The inventory comes from `nvidia-smi` (or QUANT_DAG_GPUS, a JSON list, to simulate one). A lease is an
exclusive `fcntl` lock on one file per device under the project home: two steps, even in different
processes or runs, never get the same GPU, and a lease held by a killed process is released by the kernel.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Callable


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_total_mib: int
    memory_used_mib: int = 0

    @property
    def memory_free_mib(self) -> int:
        return self.memory_total_mib - self.memory_used_mib


class NoGpuAvailable(RuntimeError):
    pass


def inventory() -> list[Gpu]:
    """GPUs on this machine: QUANT_DAG_GPUS (JSON) if set, else nvidia-smi, else none."""
    fake = os.environ.get("QUANT_DAG_GPUS")
    if fake is not None:
        return [Gpu(**g) for g in json.loads(fake)]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name,memory.total,memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        idx, name, total, used = (p.strip() for p in line.split(","))
        gpus.append(Gpu(int(idx), name, int(float(total)), int(float(used))))
    return gpus


@dataclass
class Lease:
    gpus: list[Gpu]

    @property
    def cuda_visible_devices(self) -> str:
        return ",".join(str(g.index) for g in self.gpus)

    def env(self) -> dict[str, str]:
        return {"CUDA_VISIBLE_DEVICES": self.cuda_visible_devices}

    def describe(self) -> list[dict]:
        return [asdict(g) for g in self.gpus]


def _lock_path(lock_dir: Path, gpu: Gpu) -> Path:
    return lock_dir / f"gpu-{gpu.index}.lock"


def _try_lock(path: Path) -> IO[str] | None:
    f = open(path, "a+")  # noqa: SIM115 - stays open for as long as the lease is held
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def _release(files: list[IO[str]]) -> None:
    for f in files:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


LEDGER = "ledger.jsonl"  # in the lock folder: one line per lease held, the GPU time a study really took
WAIT_REPORT_EVERY_S = 60.0


def holders(lock_dir: Path, gpus: list[Gpu]) -> str:
    """Who holds these GPUs now, from what each holder wrote into its lock file: 'GPU 0: endpoint/m/v (pid 7,
    for 120 s)'. A lock that can be taken is free (a holder killed with -9 leaves its words behind) and is skipped;
    a holder may be mid-write, so unreadable entries are skipped too."""
    out = []
    for g in gpus:
        path = _lock_path(lock_dir, g)
        if not path.is_file():
            continue
        free = _try_lock(path)
        if free is not None:
            _release([free])
            continue
        try:
            h = json.loads(path.read_text())
            out.append(f"GPU {g.index}: {h['label'] or '?'} (pid {h['pid']}, for {time.time() - h['since']:.0f} s)")
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return "; ".join(out) or "holders unknown"


def ledger(lock_dir: Path) -> list[dict]:
    """Every lease released so far under `lock_dir`: label, GPUs, when, seconds held and seconds waited."""
    path = lock_dir / LEDGER
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip().startswith("{")]


def _account(lock_dir: Path, label: str, gpus: list[Gpu], started_at: float, held_s: float, waited_s: float) -> None:
    line = json.dumps(
        {
            "label": label,
            "gpus": [g.index for g in gpus],
            "pid": os.getpid(),
            "started_at": round(started_at, 3),
            "held_s": round(held_s, 3),
            "waited_s": round(waited_s, 3),
        }
    )
    fd = os.open(lock_dir / LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())  # one short O_APPEND write: whole lines even with leases in parallel
    finally:
        os.close(fd)


@contextlib.contextmanager
def lease(
    count: int,
    lock_dir: Path,
    *,
    gpus: list[Gpu] | None = None,
    timeout_s: float = 3600,
    poll_s: float = 2.0,
    label: str = "",
    waiting: Callable[[str], None] | None = None,
) -> Iterator[Lease]:
    """Hold `count` GPUs exclusively for the block; wait up to `timeout_s` for them to be free. Each lease is
    accounted in the lock folder's ledger (`label`, usually the asset key, says what held the GPUs). `waiting`,
    when given, hears who holds them when the wait begins and every minute after."""
    asked = time.monotonic()
    next_report = asked
    gpus = inventory() if gpus is None else gpus
    if count > len(gpus):
        raise NoGpuAvailable(f"{count} GPU(s) requested, {len(gpus)} on this machine")
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        held: list[tuple[Gpu, IO[str]]] = []
        for gpu in sorted(gpus, key=lambda g: -g.memory_free_mib):  # emptiest first
            f = _try_lock(_lock_path(lock_dir, gpu))
            if f is not None:
                held.append((gpu, f))
            if len(held) == count:
                break
        files = [f for _, f in held]
        if len(held) == count:
            got, started_at, chosen = time.monotonic(), time.time(), [g for g, _ in held]
            try:
                for f in files:  # what `holders` tells the steps that wait
                    f.truncate(0)
                    f.write(json.dumps({"pid": os.getpid(), "label": label, "since": started_at}) + "\n")
                    f.flush()
                yield Lease(chosen)
            finally:
                try:
                    _account(lock_dir, label, chosen, started_at, time.monotonic() - got, got - asked)
                finally:
                    _release(files)
            return
        _release(files)
        if time.monotonic() > deadline:
            raise NoGpuAvailable(
                f"no {count} free GPU(s) within {timeout_s:.0f} s (locks in {lock_dir}; {holders(lock_dir, gpus)})"
            )
        if waiting is not None and time.monotonic() >= next_report:
            next_report += WAIT_REPORT_EVERY_S
            waited = time.monotonic() - asked
            waiting(f"waiting {waited:.0f} s for {count} GPU(s) of {len(gpus)}: {holders(lock_dir, gpus)}")
        time.sleep(poll_s)


def assigned(count: int) -> Lease:
    """The GPUs a cluster scheduler reserved for this process (Ray sets CUDA_VISIBLE_DEVICES to them): no file lock,
    the scheduler already keeps other steps off them. Fails when it reserved fewer than `count`."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    ids = [int(i) for i in visible.split(",") if i.strip().isdigit()]
    if len(ids) < count:
        raise NoGpuAvailable(
            f"{count} GPU(s) needed, the scheduler reserved {len(ids)} (CUDA_VISIBLE_DEVICES={visible!r}): "
            "the step's GPU request and its plan disagree"
        )
    known = {g.index: g for g in inventory()}
    return Lease([known.get(i, Gpu(i, "reserved by the scheduler", 0)) for i in ids[:count]])


def hold(
    count: int,
    lock_dir: Path,
    *,
    scheduler_assigned: bool,
    label: str = "",
    waiting: Callable[[str], None] | None = None,
) -> contextlib.AbstractContextManager[Lease]:
    """The GPUs a step works on: those a cluster scheduler reserved for it (`assigned`), else exclusive leases on
    this host (`lease`, accounted in the ledger under `label`; `waiting` hears who holds them while it waits)."""
    if scheduler_assigned:
        return contextlib.nullcontext(assigned(count))
    return lease(count, lock_dir, label=label, waiting=waiting)
