"""Preflight for the quantization environment (child process: imports torch).

    python -m quant_dag.quantize.preflight [--probe-fla]

Reports GPUs, memory and the torch / triton / flash-linear-attention / transformers / AutoRound versions,
and whether they work together, before a long run finds out the hard way. Seen on an H100: FLA refused
its backward pass with triton 3.6 on Hopper 80 s into an AutoRound run; on a CPU, FLA with triton
installed crashed the Qwen3.5 forward ("0 active drivers"). The verdict `use_fla: false` makes the
worker hide FLA so transformers takes its torch path.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import traceback

from quant_dag.procs import emit

FLA_MIN_TRITON_HOPPER = (3, 7, 1)


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _vtuple(v: str | None) -> tuple[int, ...]:
    if not v:
        return ()
    out = []
    for part in v.split("+")[0].split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def fla_verdict(
    fla: str | None, triton: str | None, cuda: bool, capability: tuple[int, int] | None
) -> tuple[bool, str]:
    """Whether AutoRound may use flash-linear-attention here, and why (the version rule, before any probe)."""
    if not fla:
        return False, "flash-linear-attention is not installed: transformers uses its torch path (slower on Qwen3.5)"
    if not cuda:
        return (
            False,
            (
                "no CUDA device: FLA's triton kernels cannot run on the CPU "
                "(Qwen3.5 forward crashes with triton installed)"
            ),
        )
    if not triton:
        return False, "triton is not installed: FLA cannot run"
    if capability is not None and capability[0] == 9 and _vtuple(triton) < FLA_MIN_TRITON_HOPPER:
        need = ".".join(map(str, FLA_MIN_TRITON_HOPPER))
        return False, f"FLA refuses its backward pass on Hopper with triton {triton} (needs >= {need} or tilelang)"
    return True, f"flash-linear-attention {fla} with triton {triton}"


def probe_fla() -> tuple[bool, str]:
    """Run FLA's gated delta rule forward and backward on tiny tensors: the kernels AutoRound's tuning needs."""
    try:
        import torch
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule

        b, t, h, d = 1, 64, 2, 64
        dev, dt = "cuda", torch.bfloat16
        q, k, v = (torch.randn(b, t, h, d, device=dev, dtype=dt, requires_grad=True) for _ in range(3))
        g = torch.nn.functional.logsigmoid(torch.randn(b, t, h, device=dev, dtype=torch.float32)).requires_grad_()
        beta = torch.rand(b, t, h, device=dev, dtype=dt).requires_grad_()
        o, _ = chunk_gated_delta_rule(q, k, v, g, beta, use_qk_l2norm_in_kernel=True)
        o.float().sum().backward()
        torch.cuda.synchronize()
        return True, "FLA gated-delta-rule forward+backward ran"
    except Exception as exc:  # noqa: BLE001 - any failure means: do not use FLA
        return (
            False,
            f"FLA probe failed: {type(exc).__name__}: {first_line(exc)}",
        )


def report(probe: bool) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    gpus = []
    if cuda:
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            props = torch.cuda.get_device_properties(i)
            gpus.append(
                {
                    "index": i,
                    "name": props.name,
                    "capability": f"{props.major}.{props.minor}",
                    "memory_total_mib": total // 2**20,
                    "memory_free_mib": free // 2**20,
                }
            )
    capability = torch.cuda.get_device_capability(0) if cuda else None
    versions = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": _version("triton"),
        "flash-linear-attention": _version("flash-linear-attention") or _version("fla-core"),
        "transformers": _version("transformers"),
        "auto-round": _version("auto-round"),
        "causal-conv1d": _version("causal-conv1d"),
    }
    use_fla, why = fla_verdict(versions["flash-linear-attention"], versions["triton"], cuda, capability)
    if use_fla and probe:
        use_fla, why = probe_fla()
    return {"cuda": cuda, "gpus": gpus, "versions": versions, "use_fla": use_fla, "fla_reason": why}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--probe-fla", action="store_true", help="run FLA's kernels once (seconds: triton compiles)")
    args = parser.parse_args()
    try:
        emit("preflight", **report(args.probe_fla))
    except Exception:  # noqa: BLE001 - report, the parent decides
        emit("preflight", error=traceback.format_exc(limit=3))
        raise


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""
