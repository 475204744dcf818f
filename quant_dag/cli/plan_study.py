"""`quant-dag plan <study>`: GPU memory and GPU-hours per variant and suite, before anything runs (no Dagster)."""

from __future__ import annotations

import argparse
import sys

from quant_dag import gpu
from quant_dag.cli.base import CLISubcommand, add_shared_options, study_args


def cmd_plan(args: argparse.Namespace) -> int:
    from quant_dag.planning import MEASURED, format_check, format_plan, measured_gpu_seconds, plan_study
    from quant_dag.profiles import load_profile

    home, cat = study_args(args)
    if cat is None:
        return 2
    try:
        profile = load_profile(args.profile or "gpu-node")
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    devices = sorted({m.device for m in MEASURED})
    device = args.device or ("CPU" if profile.quantize.device == "cpu" else this_gpu(devices) or "H200")
    if device not in devices:
        print(f"no measured throughput for device {device!r} (known: {', '.join(devices)})", file=sys.stderr)
        return 2
    print(format_plan(plan_study(cat, home, profile, args.study, device)))
    if args.check:
        prior = plan_study(cat, home, profile, args.study, device, history=False)
        print(format_check(prior, measured_gpu_seconds(cat, home, args.study)))
    return 0


def this_gpu(known: list[str]) -> str | None:
    """The measured device this host's GPUs are (an H100 plans with the H100's numbers), else None."""
    for g in gpu.inventory():
        for d in known:
            if d != "CPU" and d in g.name:
                return d
    return None


class PlanCommand(CLISubcommand):
    """`plan <study> [--profile P] [--device D]`."""

    name = "plan"

    def subparser_init(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(self.name, help="GPU memory and GPU-hours a study will take, before it runs")
        parser.add_argument("study")
        add_shared_options(
            parser, "catalog", "home", "profile", profile_help="resource profile to plan for (default: gpu-node)"
        )
        parser.add_argument("--device", default=None, help="GPU to plan for (default: H200, CPU for a CPU profile)")
        parser.add_argument(
            "--check",
            action="store_true",
            help="also compare the plan made without history with the GPU time the last run's steps held",
        )
        return parser

    def cmd(self, args: argparse.Namespace) -> int:
        return cmd_plan(args)
