"""Run untrusted Python (model-written code) in a throwaway Linux sandbox.

Design, as implemented:

* Namespaces. `unshare --fork --pid --kill-child --mount --net --ipc --uts` starts a small init script (run by
  the sandbox interpreter with -I -S) as pid 1 of a new pid namespace. Not root: `--user --map-root-user` is
  added, so it works unprivileged where user namespaces are allowed. The network namespace has only a `lo`
  that is down: every connect() fails, 127.0.0.1 included. When init exits, or is killed (`--kill-child`
  kills it when unshare dies, and the parent kills the whole process group on its wall deadline), the kernel
  kills every process in the namespace: nothing a fork bomb made survives the call.
* Filesystem. Init makes all mounts private, mounts a small tmpfs as the new root and fills it with read-only,
  nosuid, nodev bind mounts of /usr (and /bin, /sbin, /lib* where they are real directories; merged-/usr
  symlinks are copied as symlinks), bind mounts of /dev/{null,zero,random,urandom}, the program at /program.py,
  and a size-limited tmpfs at /tmp. The root tmpfs is then remounted read-only and pivot_root'ed into; the old
  root is detached, so no path leads back to the host (no /proc, /sys, /etc, /home, /root, /work, no venv).
  Adjustment to the brief: the only writable place is that fresh tmpfs /tmp (the cwd and HOME), not a host
  directory, so nothing the program writes ever reaches the host disk, and its size is capped (`tmp_mb`).
* Identity and limits. Init forks the program's process, which sets RLIMIT_CPU (soft cpu_s, hard cpu_s + 1),
  RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE, RLIMIT_NOFILE and RLIMIT_CORE=0, sets no_new_privs, empties the
  capability bounding set and, when the sandbox was started by real root, drops to uid/gid 65534 (nobody), so
  RLIMIT_NPROC applies (root ignores it). Unprivileged, the program stays uid 0 of its own user namespace with
  no capabilities; RLIMIT_NPROC then counts per user namespace (Linux >= 5.14; older kernels count every
  process of the real user). As nobody, max_procs is shared by sandboxes running at the same time.
* Environment. Nothing is inherited: unshare, init and the program get a fresh env (PATH, LANG, HOME=/tmp,
  TMPDIR=/tmp, PYTHONHASHSEED=0, PYTHONUTF8=1, PYTHONDONTWRITEBYTECODE=1).
* Interpreter. The system Python (/usr/bin/python3, else /usr/local/bin/python3, else the base interpreter behind
  this venv, whose prefix is then bind-mounted read-only), never the project's venv. Adjustment to the brief:
  the program runs with `-s -P` (the parts of -I that matter here) rather than -I, because -I implies -E,
  which would ignore PYTHONHASHSEED=0; the env is built from scratch, so -E adds nothing. Not -S either: it
  would drop the `exit()` / `quit()` builtins that generated code often calls. Only the read-only stdlib and
  system site-packages under the bind-mounted prefix are importable.
* Time. Init kills the namespace `wall_s` after the program starts (even if this process died); this process
  also kills the whole process group a few seconds later as a backstop. Captured stdout and stderr are read
  as they come and capped at max_output_bytes; past the cap the sandbox is killed (`output_truncated`).

Limits not enforced: total memory is bounded only per process (max_procs x memory_mb in the worst case); no
cgroup is used. There is no unsandboxed fallback: `run_python` raises `SandboxUnavailable` when the probe
failed, and callers record the sample as an error.
"""

from __future__ import annotations

import json
import os
import platform
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
_PROGRAM = "/program.py"  # the program's path inside the sandbox
_BACKSTOP_S = 5.0  # extra wall time the parent allows for namespace setup before it kills the group
_PIVOT_ROOT_NR = {"x86_64": 155, "aarch64": 41, "riscv64": 41}  # pivot_root syscall numbers


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10  # from the program's start
    cpu_s: int = 10  # per process
    memory_mb: int = 1024  # address space, per process
    max_procs: int = 32  # processes + threads of the sandbox user
    max_file_mb: int = 16  # largest file it may write
    max_output_bytes: int = 1_000_000  # per stream; past it the sandbox is killed
    tmp_mb: int = 64  # size of the writable tmpfs /tmp


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None  # None: killed from outside (timeout, output cap); negative: killed by that signal
    stdout: str
    stderr: str
    timed_out: bool
    wall_s: float
    output_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run here; the message says why. Code is never run unsandboxed instead."""


class SandboxError(RuntimeError):
    """The sandbox failed to start (not the program failing)."""


# Runs as pid 1 of the new namespaces, before and after pivot_root; argv[1] is a JSON config.
_INIT = r"""
import ctypes, json, os, resource, signal, sys
cfg = json.loads(sys.argv[1])
status_fd = cfg["status_fd"]
os.set_inheritable(status_fd, False)  # the program must not inherit it

def report(**kw):
    try:
        os.write(status_fd, (json.dumps(kw) + "\n").encode())
    except OSError:
        pass

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
# statvfs flag -> mount flag: a remount in a user namespace must keep the source's locked flags
KEEP = {os.ST_NOEXEC: MS_NOEXEC, os.ST_NOATIME: MS_NOATIME, os.ST_NODIRATIME: MS_NODIRATIME,
        os.ST_RELATIME: MS_RELATIME, os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV}
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
enc = lambda s: None if s is None else s.encode()

def check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, what + ": " + os.strerror(e))

def mount(src, dst, fstype, flags, data=None):
    check(libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)), "mount %s on %s" % (src, dst))

def bind_ro(src, dst):
    try:
        mount(src, dst, None, MS_BIND)
    except OSError:  # a user namespace refuses a non-recursive bind over locked submounts
        mount(src, dst, None, MS_BIND | MS_REC)
    kept = 0
    f = os.statvfs(src).f_flag
    for st, ms in KEEP.items():
        if f & st:
            kept |= ms
    mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | kept)

def build_root():
    root = cfg["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here propagates to the host
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=1024,mode=0755")
    for name in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = "/" + name
        if os.path.islink(host):  # merged /usr: keep the symlink
            os.symlink(os.readlink(host), root + host)
        elif os.path.isdir(host):
            os.mkdir(root + host)
            bind_ro(host, root + host)
    for path in cfg["extra_ro"]:  # the interpreter's prefix when it is not under /usr
        os.makedirs(root + path, exist_ok=True)
        bind_ro(path, root + path)
    os.mkdir(root + "/dev")
    for dev in ("null", "zero", "random", "urandom"):
        open(root + "/dev/" + dev, "w").close()
        mount("/dev/" + dev, root + "/dev/" + dev, None, MS_BIND)
    os.mkdir(root + "/tmp")
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
          "size=%dm,nr_inodes=4096,mode=1777" % cfg["tmp_mb"])
    with open(cfg["program"], "rb") as src, open(root + cfg["program_dst"], "wb") as dst:
        dst.write(src.read())
    mount(None, root, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(root)
    if cfg["pivot_nr"] is not None:  # pivot_root(".", ".") then detach the old root stacked on top
        check(libc.syscall(ctypes.c_long(cfg["pivot_nr"]), b".", b"."), "pivot_root")
        check(libc.umount2(b".", 2), "umount old root")  # MNT_DETACH
    else:  # unknown arch: chroot, which the capability-less program cannot escape
        os.chroot(".")
    os.chdir("/")

def start_program():
    os.setsid()
    os.chdir("/tmp")
    lim = cfg["limits"]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (lim["cpu_s"], lim["cpu_s"] + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_AS, (lim["memory_mb"] << 20,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim["max_file_mb"] << 20,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    resource.setrlimit(resource.RLIMIT_NPROC, (lim["max_procs"],) * 2)
    check(libc.prctl(38, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")  # setuid binaries cannot raise privileges
    for cap in range(64):  # empty bounding set: an exec as (namespace) root gains no capability
        if libc.prctl(24, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:  # PR_CAPBSET_DROP; EINVAL: no such cap
            check(-1, "PR_CAPBSET_DROP")
    if cfg["drop_uid"]:  # real root ignores RLIMIT_NPROC: become nobody
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
    os.execve(cfg["python"], [cfg["python"], *cfg["python_args"], cfg["program_dst"]], cfg["env"])

try:
    build_root()
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: the program cannot ptrace init
    pid = os.fork()
    if pid == 0:
        try:
            start_program()
        except BaseException as exc:
            report(error="start: %r" % (exc,))
        os._exit(126)
except BaseException as exc:
    report(error="setup: %r" % (exc,))
    os._exit(125)

def on_alarm(signum, frame):
    report(timeout=True)
    os._exit(124)  # pid 1 exits: the kernel kills everything left in the namespace

signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, cfg["wall_s"])
while True:
    wpid, status = os.waitpid(-1, 0)  # pid 1 also reaps orphans
    if wpid == pid:
        report(exit=os.waitstatus_to_exitcode(status))
        os._exit(0)
"""


@dataclass(frozen=True)
class _Setup:
    unshare: str
    python: str
    python_args: tuple[str, ...]
    extra_ro: tuple[str, ...]
    as_root: bool


_probe_lock = threading.Lock()
_probe: tuple[_Setup | None, str | None] | None = None


def _minimal_env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def _program_env() -> dict[str, str]:
    return {
        **_minimal_env(),
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "PYTHONHASHSEED": "0",
        "PYTHONUTF8": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _find_python() -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """The system interpreter, its flags, and what to bind-mount for it beyond /usr."""
    repo = Path(__file__).resolve().parents[2]
    base = getattr(sys, "_base_executable", None) or sys.executable
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3", base):
        if not os.access(cand, os.X_OK):
            continue
        real = os.path.realpath(cand)
        query = "import sys; print(sys.version_info[0], sys.version_info[1]); print(sys.base_prefix)"
        out = subprocess.run(
            [real, "-I", "-S", "-c", query], capture_output=True, text=True, timeout=30, env=_minimal_env()
        )
        if out.returncode != 0:
            continue
        ver, prefix = out.stdout.splitlines()[:2]
        major, minor = map(int, ver.split())
        extra = sorted({p for p in (os.path.realpath(prefix), os.path.dirname(real)) if not _under_usr(p)})
        extra = [p for p in extra if not any(p != q and _under(p, (q,)) for q in extra)]  # one mount per tree
        if (major, minor) < (3, 9) or any(Path(p).is_relative_to(repo) for p in [real, *extra]):
            continue  # too old for init, or the project's own files
        return real, ("-s", "-P") if (major, minor) >= (3, 11) else ("-s",), tuple(extra)
    raise SandboxUnavailable("no usable system Python 3 (/usr/bin/python3, /usr/local/bin/python3 or the venv's base)")


def _under(path: str, dirs: tuple[str, ...]) -> bool:
    return any(path == d or path.startswith(d + "/") for d in dirs)


def _under_usr(path: str) -> bool:
    return _under(path, ("/usr", "/bin", "/sbin", "/lib", "/lib64"))


def _check_setup() -> _Setup:
    if sys.platform != "linux":
        raise SandboxUnavailable(f"needs Linux namespaces, this is {sys.platform}")
    unshare = next((p for p in ("/usr/bin/unshare", "/bin/unshare") if os.access(p, os.X_OK)), None)
    unshare = unshare or shutil.which("unshare")
    if not unshare:
        raise SandboxUnavailable("util-linux `unshare` not found")
    python, args, extra = _find_python()
    return _Setup(unshare, python, args, extra, as_root=os.geteuid() == 0)


_PROBE_PROGRAM = """
import os, socket, sys
hidden = not any(os.path.exists(p) for p in {paths!r})
try:
    socket.create_connection(("127.0.0.1", 9), timeout=1).close()
    net = "open"
except OSError as exc:
    net = "down" if exc.errno == 101 else "error %s" % exc.errno  # ENETUNREACH: no interface up
print("probe", hidden, net, os.getuid(), sys.flags.hash_randomization)
"""


def sandbox_unavailable() -> str | None:
    """None if the sandbox works here, else why not. Probed once (starts one sandbox), then cached."""
    global _probe
    with _probe_lock:
        if _probe is None:
            try:
                setup = _check_setup()
                # host paths that must not be visible inside (those the sandbox mounts itself are left out)
                visible = ("/usr", "/bin", "/sbin", "/lib", "/dev", "/tmp", *setup.extra_ro)
                host = (str(Path(__file__).resolve()), os.path.expanduser("~"), os.getcwd(), sys.prefix)
                hidden = [
                    p
                    for p in host
                    if p.startswith("/")
                    and p != "/"
                    and not _under(p, visible)
                    and not any(_under(v, (p,)) for v in setup.extra_ro)
                ]  # parents of a mount exist
                res = _run(setup, _PROBE_PROGRAM.format(paths=hidden), "", Limits(wall_s=10))
                uid = NOBODY if setup.as_root else 0
                want = f"probe True down {uid} 0"
                if res.stdout.strip() != want:
                    raise SandboxUnavailable(
                        f"probe gave {res.stdout.strip()!r} (want {want!r}), rc={res.returncode}, "
                        f"stderr: {res.stderr.strip()[-300:]!r}"
                    )
                _probe = (setup, None)
            except Exception as exc:  # any failure of the probe means: do not run code here
                _probe = (None, f"{type(exc).__name__}: {exc}")
        return _probe[1]


def run_python(program: str, stdin: str = "", limits: Limits = Limits()) -> SandboxResult:
    """Run `program` (Python source) in the sandbox, with `stdin` on its standard input.

    Raises SandboxUnavailable when the sandbox cannot run here, SandboxError when it failed to start."""
    why = sandbox_unavailable()
    if why is not None:
        raise SandboxUnavailable(why)
    assert _probe is not None and _probe[0] is not None
    return _run(_probe[0], program, stdin, limits)


def _run(setup: _Setup, program: str, stdin: str, limits: Limits) -> SandboxResult:
    tmp = Path(tempfile.mkdtemp(prefix="quant-dag-sandbox-"))
    status_r, status_w = os.pipe()
    proc: subprocess.Popen[bytes] | None = None
    try:
        (tmp / "root").mkdir()
        (tmp / "program.py").write_text(program, encoding="utf-8")
        cfg = {
            "root": str(tmp / "root"),
            "program": str(tmp / "program.py"),
            "program_dst": _PROGRAM,
            "extra_ro": list(setup.extra_ro),
            "tmp_mb": int(limits.tmp_mb),
            "status_fd": status_w,
            "pivot_nr": _PIVOT_ROOT_NR.get(platform.machine()),
            "wall_s": float(limits.wall_s),
            "limits": {
                "cpu_s": int(limits.cpu_s),
                "memory_mb": int(limits.memory_mb),
                "max_file_mb": int(limits.max_file_mb),
                "max_procs": int(limits.max_procs),
            },
            "drop_uid": setup.as_root,
            "uid": NOBODY,
            "python": setup.python,
            "python_args": list(setup.python_args),
            "env": _program_env(),
        }
        cmd = [setup.unshare, "--fork", "--pid", "--kill-child", "--mount", "--net", "--ipc", "--uts"]
        if not setup.as_root:
            cmd += ["--user", "--map-root-user"]
        cmd += ["--", setup.python, "-I", "-S", "-c", _INIT, json.dumps(cfg)]
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_minimal_env(),
            cwd=tmp,
            pass_fds=(status_w,),
            start_new_session=True,  # its own group: one killpg ends it all
        )
        os.close(status_w)
        status_w = -1
        out, err, killed_for = _communicate(
            proc, stdin.encode("utf-8"), t0 + limits.wall_s + _BACKSTOP_S, limits.max_output_bytes
        )
        proc.wait()
        wall = time.monotonic() - t0
        status = _read_status(status_r)
    finally:
        if proc is not None and proc.poll() is None:
            _kill(proc)
        for fd in (status_r, status_w):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)

    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    if killed_for == "output":
        return SandboxResult(None, stdout, stderr, False, wall, output_truncated=True)
    if killed_for == "timeout" or status.get("timeout"):
        return SandboxResult(None, stdout, stderr, True, wall)
    if "error" in status:
        raise SandboxError(f"sandbox failed to start: {status['error']}")
    if "exit" not in status:
        raise SandboxError(f"sandbox failed to start (unshare rc={proc.returncode}): {stderr.strip()[-500:]}")
    return SandboxResult(int(status["exit"]), stdout, stderr, False, wall)


def _communicate(
    proc: subprocess.Popen[bytes], data: bytes, deadline: float, cap: int
) -> tuple[bytes, bytes, str | None]:
    """Feed stdin and read both streams until they close; kill at the deadline or past `cap` bytes a stream.
    Returns (stdout, stderr, why killed or None)."""
    assert proc.stdin and proc.stdout and proc.stderr
    bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    sel = selectors.DefaultSelector()
    for fd in bufs:
        sel.register(fd, selectors.EVENT_READ)
    view, stdin_fd = memoryview(data), proc.stdin.fileno()
    if data:
        os.set_blocking(stdin_fd, False)
        sel.register(stdin_fd, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    killed_for = None
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                killed_for = "timeout"
                break
            for key, _ in sel.select(left):
                fd = key.fd
                if fd == stdin_fd:
                    try:
                        view = view[os.write(fd, view[:65536]) :]
                    except (BrokenPipeError, BlockingIOError) as exc:
                        if isinstance(exc, BlockingIOError):
                            continue
                        view = view[:0]
                    if not view:
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(fd)
                    continue
                bufs[fd] += chunk
                if len(bufs[fd]) > cap:
                    killed_for = "output"
            if killed_for:
                break
    finally:
        sel.close()
        if killed_for:
            _kill(proc)
        if not proc.stdin.closed:
            proc.stdin.close()
    out, err = (bytes(bufs[f.fileno()][:cap]) for f in (proc.stdout, proc.stderr))
    return out, err, killed_for


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL unshare's process group: unshare and init die, and with init every process of the namespace."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _read_status(fd: int) -> dict:
    """Init's last report (all writers are gone once unshare has exited, so this does not block)."""
    data = b""
    os.set_blocking(fd, False)  # a stray writer must not hang us
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    status: dict = {}
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            status.update(json.loads(line))
        except json.JSONDecodeError:
            pass
    return status
