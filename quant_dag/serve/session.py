"""One serving session: everything between "serve this checkpoint" and a healthy vLLM server, without Dagster.

servability -> options (profile, then the model's own serving settings, then the device's flags) -> tensor
parallelism -> GPU lease -> server -> start journal. The endpoint step only turns what it returns into Dagster
events; the same session serves a bench script or a notebook.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from quant_dag import gpu
from quant_dag.catalog.graph import SERVER_STARTS_FILE
from quant_dag.catalog.schema import ModelServe
from quant_dag.checkpoint.layout import read_config, read_layout
from quant_dag.profiles import ResourceProfile
from quant_dag.serve.endpoint import EndpointRecord, load_record, new_record
from quant_dag.serve.placement import ParallelPlan, plan_parallel
from quant_dag.serve.plan import auto_tp_kv_bytes, device_flags, servable_on, served_length
from quant_dag.serve.server import ServeOptions, VllmServer


class ServingSession:
    """Plans how one checkpoint is served (on construction) and serves it (`start`).

    `workdir` is the endpoint's artifacts folder: its vLLM log, verification record and start journal live there.
    """

    def __init__(
        self,
        checkpoint: Path,
        workdir: Path,
        profile: ResourceProfile,
        model_serve: ModelServe,
        *,
        python: str,
        cache_dir: Path,
        locks_dir: Path,
        label: str = "",
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.checkpoint, self.workdir, self.profile, self.python = checkpoint, workdir, profile, python
        self.locks_dir, self.label, self.log = locks_dir, label, log  # label: what the GPU ledger calls it
        self.device = "cpu" if profile.quantize.device == "cpu" else "cuda"
        self.servability = servable_on(self.device, checkpoint, python)
        log(f"servable on {self.device}: {self.servability.servable} ({self.servability.reason})")
        options = ServeOptions.from_profile(profile.serve, cache_dir)
        if model_serve.reasoning_parser:  # the model's own parser wins over the profile's
            options.reasoning_parser = model_serve.reasoning_parser
        options.extra_args = [*options.extra_args, *model_serve.extra_args]
        self.config = config = read_config(checkpoint)
        options.extra_args += device_flags(self.device, config, options.extra_args)
        if (length := served_length(config, options.max_model_len)) < options.max_model_len:
            log(f"max_model_len {options.max_model_len} -> {length}: the model's context ends there")
            options.max_model_len = length
        self.options = options
        self.lease: gpu.Lease | None = None
        self.plan: ParallelPlan | None = None
        self.server_info: dict[str, object] | None = None

    def previous_record(self) -> EndpointRecord | None:
        """The last verification written for this endpoint (None when it never ran)."""
        return load_record(self.workdir)

    def new_record(self, random_weights: bool = False) -> EndpointRecord:
        return new_record(self.servability, self.options, self.workdir, random_weights)

    def plan_on_host(self) -> ParallelPlan:
        """The parallel plan on this host's GPUs: `tensor_parallel_size: auto` takes the fewest GPUs that hold the
        weights and the KV cache of the profile's `auto_tp_sequences` sequences of `max_model_len` tokens."""
        serve = self.profile.serve
        if self.device == "cpu":
            return ParallelPlan(1, 1, "CPU serving")
        weights = kv = None
        if serve.tensor_parallel_size == "auto":
            weights = read_layout(self.checkpoint).total_bytes
            kv = auto_tp_kv_bytes(self.config, self.options.max_model_len, serve.auto_tp_sequences)
        inv = gpu.inventory()
        if not inv and "auto" not in (serve.tensor_parallel_size, serve.data_parallel_size):
            tp, dp = int(serve.tensor_parallel_size), int(serve.data_parallel_size)
            return ParallelPlan(tp, dp, "set in the profile")  # the lease says whether the GPUs exist
        if not inv:
            raise gpu.NoGpuAvailable("tensor/data parallel `auto` needs the host's GPUs; nvidia-smi lists none")
        return plan_parallel(
            weights,
            kv,
            gpu_bytes=min(g.memory_total_mib for g in inv) * 2**20,
            gpus_per_endpoint=serve.gpus_per_endpoint,
            max_gpus=len(inv),
            tensor_parallel=serve.tensor_parallel_size,
            data_parallel=serve.data_parallel_size,
            utilization=serve.gpu_memory_utilization or 0.9,
        )

    def use_plan(self, plan: ParallelPlan) -> None:
        """A plan made before the step started (on a cluster, the scheduler reserved exactly its GPUs)."""
        self.plan = plan
        if self.device == "cpu":
            return
        self.options.tensor_parallel_size, self.options.data_parallel_size = plan.tensor_parallel, plan.data_parallel
        if self.profile.cluster and plan.gpus > 1:
            self.options.distributed_executor_backend = "mp"
        self.log(f"parallel plan: TP {plan.tensor_parallel} x DP {plan.data_parallel} ({plan.why})")

    @contextlib.contextmanager
    def start(self, record: EndpointRecord, run_id: str) -> Iterator[VllmServer]:
        """Lease the GPUs, start vLLM (raises `ServerFailed` when it does not come up) and journal the start; the
        server stops and the lease is released on every exit path."""
        with contextlib.ExitStack() as stack:
            gpus = self.options.tensor_parallel_size * self.options.data_parallel_size
            if self.device != "cpu":  # on a cluster the scheduler reserved them; on one host, file locks
                on_cluster = self.profile.cluster is not None
                self.lease = stack.enter_context(
                    gpu.hold(gpus, self.locks_dir, scheduler_assigned=on_cluster, label=self.label, waiting=self.log)
                )
                self.options.env.update(self.lease.env())
            srv = stack.enter_context(
                VllmServer(self.checkpoint, self.options, Path(record.log), python=self.python, progress=self.log)
            )
            self.server_info = {
                "run_id": run_id,
                "pid": srv.proc.pid if srv.proc else None,
                "port": srv.port,
                "started_at": time.time(),
                "start_s": srv.started_s,
                # what a cluster scheduler reserved for the step (Ray sets it even for declared GPUs)
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "host": socket.gethostname(),
            }
            with open(self.workdir / SERVER_STARTS_FILE, "a") as fh:  # one line per server start: sharing is auditable
                fh.write(json.dumps(self.server_info) + "\n")
            yield srv
