"""Run a command and take its whole process group down when our parent dies, even by kill -9.

    python -m quant_dag.serve.guard LOGFILE -- CMD...

vLLM spawns its own engine processes, so PR_SET_PDEATHSIG on the server alone is not enough: this
guard starts CMD in a new process group, gets SIGTERM when its parent (the Dagster step) dies, and then
kills that group. It exits with CMD's status.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from quant_dag.procs import die_with_parent


def main(argv: list[str]) -> int:
    log_path, sep, *cmd = argv
    if sep != "--" or not cmd:
        print("usage: python -m quant_dag.serve.guard LOGFILE -- CMD...", file=sys.stderr)
        return 2
    parent = os.getppid()
    die_with_parent(signal.SIGTERM)
    with open(log_path, "ab", buffering=0) as log:
        child = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )

        def stop(signum: int = signal.SIGTERM, frame: object = None) -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            deadline = time.monotonic() + 8  # under kill_group's 10 s grace for the guard itself
            while child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)  # the engine processes too, whatever state they are in
            child.wait()
            sys.exit(128 + signum if signum else child.returncode)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while child.poll() is None:
            if os.getppid() != parent:  # parent gone before PDEATHSIG was armed
                stop()
            time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # leftovers of a server that exited on its own
        return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
