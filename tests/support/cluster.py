"""A real Postgres server and a real two-node Ray cluster on this machine, for the cluster tests.

Postgres: the Debian package's binaries, a throwaway cluster in a temporary folder (trust authentication on
127.0.0.1 only), stopped afterwards. Ray: a head node without GPUs and a worker node that declares 2 GPUs, each
with its own ports; every process they start is killed afterwards (not `ray stop`, which would take down any other
Ray cluster of this machine too).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

VENV_BIN = Path(sys.executable).parent


_GIVEN: set[int] = set()


def free_port() -> int:
    """A free port on 127.0.0.1 not handed out before in this process. The kernel may give a just-closed port
    again: a Ray head once got the same port for its GCS and its dashboard agent, and `ray start` refused it."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin/ (Debian: /usr/lib/postgresql/<major>/bin), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class Postgres:
    hostname: str
    port: int
    username: str
    db_name: str


@contextlib.contextmanager
def postgres_server(db_name: str = "quant_dag") -> Iterator[Postgres]:
    """A fresh PostgreSQL server on 127.0.0.1 with one empty database. As root it runs as the `postgres` user
    (PostgreSQL refuses root)."""
    import psycopg2

    bindir = postgres_bin()
    assert bindir is not None, "no PostgreSQL binaries"
    root = Path(tempfile.mkdtemp(prefix="qd-pg-", dir="/tmp"))  # short: the socket path has a length limit
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = root / "data"
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "dagster", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log")]
    subprocess.run([*ctl, "-o", opts, "-w", "start"], check=True, capture_output=True)
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="dagster", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {db_name}")
        conn.close()
        yield Postgres("127.0.0.1", port, "dagster", db_name)
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class RayCluster:
    """Head (no GPUs) + worker (2 declared GPUs) on 127.0.0.1."""

    root: Path
    gcs_port: int
    dashboard_port: int
    env: dict[str, str]
    worker_gpus: int = 2
    worker_cpus: int = 3
    worker_node_id: str = ""
    _roots: set[int] = field(default_factory=set)

    @property
    def address(self) -> str:
        """Ray's job-submission address (what the profile's cluster.address names)."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _ray(self, *args: str) -> None:
        proc = subprocess.run(
            [str(VENV_BIN / "ray"), "start", *args, "--disable-usage-stats"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")

    def start_head(self) -> None:
        self._ray(
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={self.gcs_port}",
            "--num-cpus=2",
            "--num-gpus=0",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
            f"--temp-dir={self.root}",
            "--object-store-memory=100000000",
            "--min-worker-port=0",
            "--max-worker-port=0",
        )

    def start_worker(self) -> str:
        """Start (or restart) the worker node; returns its node id."""
        before = set(self.node_ids())
        self._ray(
            f"--address=127.0.0.1:{self.gcs_port}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={self.worker_cpus}",
            f"--num-gpus={self.worker_gpus}",
            f"--dashboard-agent-listen-port={free_port()}",
            "--object-store-memory=100000000",
            "--min-worker-port=0",
            "--max-worker-port=0",
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = set(self.node_ids(alive_only=True)) - before
            if new:
                self.worker_node_id = new.pop()
                return self.worker_node_id
            time.sleep(1)
        raise RuntimeError("the worker node did not register")

    def nodes(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.address}/nodes?view=summary", timeout=10) as resp:
            return json.loads(resp.read())["data"]["summary"]

    def node_ids(self, alive_only: bool = False) -> list[str]:
        return [n["raylet"]["nodeId"] for n in self.nodes() if not alive_only or n["raylet"].get("state") == "ALIVE"]

    def raylet_pid(self, node_id: str) -> int:
        for proc in psutil.process_iter(["name", "cmdline"]):
            if proc.info["name"] == "raylet" and f"--node_id={node_id}" in (proc.info["cmdline"] or []):
                return proc.pid
        raise LookupError(f"no raylet process for node {node_id}")

    def kill_worker_raylet(self) -> None:
        os.kill(self.raylet_pid(self.worker_node_id), signal.SIGKILL)

    def own_processes(self) -> list[psutil.Process]:
        """Every process of this cluster: those naming its folder or ports, and all their descendants."""
        marks = (str(self.root), f":{self.gcs_port}")
        roots = []
        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if any(m in cmd for m in marks) and proc.pid != os.getpid():
                roots.append(proc)
        out = {p.pid: p for p in roots}
        for p in roots:
            with contextlib.suppress(psutil.Error):
                out.update({c.pid: c for c in p.children(recursive=True)})
        return list(out.values())

    def stop(self) -> None:
        for _ in range(3):
            procs = self.own_processes()
            if not procs:
                break
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            psutil.wait_procs(procs, timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def ray_cluster() -> Iterator[RayCluster]:
    root = Path(tempfile.mkdtemp(prefix="qd-ray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "QUANT_DAG_", "DAGSTER_", "CUDA_VISIBLE"))}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    cluster = RayCluster(root, free_port(), free_port(), env)
    try:
        cluster.start_head()
        cluster.start_worker()
        yield cluster
    finally:
        cluster.stop()
