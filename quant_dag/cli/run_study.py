"""`quant-dag run <study>` and `quant-dag demo`: materialize a study with the real `dagster job execute` into the
persistent instance, print its status tables, and say how to open it in the Dagster UI."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

from quant_dag.cli.base import CLISubcommand, add_shared_options, study_args
from quant_dag.home import REPO, ProjectHome


def ensure_dagster_home(home: ProjectHome) -> Path:
    dh = home.dagster_home
    dh.mkdir(parents=True, exist_ok=True)
    cfg = dh / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text("telemetry:\n  enabled: false\n")
    return dh


def ui_command(home: Path, catalog: Path, profile: str | None = None) -> str:
    """The `dagster dev` line that opens the same instance with the same catalog and profile (same code versions)."""
    env = f"DAGSTER_HOME={shlex.quote(str(home / 'dagster'))} QUANT_DAG_HOME={shlex.quote(str(home))}"
    if catalog != (REPO / "assets").resolve():
        env += f" QUANT_DAG_CATALOG={shlex.quote(str(catalog))}"
    if profile:
        env += f" QUANT_DAG_PROFILE={shlex.quote(profile)}"
    dagster = Path(sys.executable).parent / "dagster"
    return f"cd {shlex.quote(str(REPO))} && {env} {dagster} dev -w workspace.yaml"


def cmd_run(args: argparse.Namespace) -> int:
    """Materialize one study's assets with the real `dagster job execute` into the persistent instance."""
    from quant_dag.cli.study_status import print_study_status
    from quant_dag.defs.jobs import study_job_name

    home, cat = study_args(args)
    if cat is None:
        return 2
    env = {
        **os.environ,
        "DAGSTER_HOME": str(ensure_dagster_home(home)),
        "QUANT_DAG_HOME": str(home.root),
        "QUANT_DAG_CATALOG": str(cat.root),
    }
    if args.profile:
        env["QUANT_DAG_PROFILE"] = args.profile
    dagster = [sys.executable, "-m", "dagster"]
    cmd = dagster + ["job", "execute", "-m", "quant_dag.definitions", "-j", study_job_name(args.study)]
    print(f"$ {' '.join(cmd[2:])}   (DAGSTER_HOME={env['DAGSTER_HOME']})", flush=True)
    rc = subprocess.call(cmd, env=env, cwd=REPO)
    if rc != 0 and cat.studies[args.study].benchmarks:
        # a failed step skips what is below it; the summary still shows what exists, and why the rest is missing
        select = f"summary/{args.study}"
        print(f"$ dagster asset materialize --select {select}   (the run failed: summarize what exists)", flush=True)
        summarize = dagster + ["asset", "materialize", "-m", "quant_dag.definitions", "--select", select]
        subprocess.call(summarize, env=env, cwd=REPO)
    ok = print_study_status(cat, args.study, home)
    print(
        textwrap.dedent(
            f"""
            Open it in the Dagster UI (then http://127.0.0.1:3000, Assets or Runs):
              {ui_command(home.root, cat.root, args.profile)}
            """
        )
    )
    return 0 if rc == 0 and ok else 1


class RunCommand(CLISubcommand):
    """`run <study>`: materialize one study."""

    name = "run"

    def subparser_init(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(self.name, help="materialize one study")
        parser.add_argument("study")
        return add_shared_options(parser, "catalog", "home", "profile")

    def cmd(self, args: argparse.Namespace) -> int:
        return cmd_run(args)


class DemoCommand(RunCommand):
    """`demo`: `run demo`, the demo study end to end, offline."""

    name = "demo"

    def subparser_init(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(self.name, help="run the demo study end to end, offline")
        parser.set_defaults(study="demo")
        return add_shared_options(parser, "catalog", "home", "profile")
