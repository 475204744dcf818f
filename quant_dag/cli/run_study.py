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

import yaml

from quant_dag.cli.base import CLISubcommand, add_shared_options, study_args
from quant_dag.home import REPO, ProjectHome
from quant_dag.profiles import ResourceProfile, load_profile

GENERATED = "# written by quant-dag"
EARLIER = "telemetry:\n  enabled: false\n"  # what quant-dag wrote before profiles could choose the storage


def instance_config(profile: ResourceProfile | None) -> str:
    """dagster.yaml for the project's instance: local storage, or the cluster profile's Postgres (workers on other
    hosts write their steps' events there)."""
    cfg: dict[str, object] = {"telemetry": {"enabled": False}}
    if profile is not None and profile.cluster is not None:
        cfg["storage"] = profile.cluster.postgres.dagster_storage()
    origin = f" from resource profile {profile.name!r}" if profile and profile.cluster else ""
    return f"{GENERATED}{origin}; edit the profile, not this file\n" + yaml.safe_dump(cfg, sort_keys=False)


def ensure_dagster_home(home: ProjectHome, profile: ResourceProfile | None = None) -> Path:
    """The instance's folder with its dagster.yaml. A file quant-dag wrote follows the profile (local storage or
    the cluster's Postgres); a file someone wrote by hand is left as it is."""
    dh = home.dagster_home
    dh.mkdir(parents=True, exist_ok=True)
    cfg = dh / "dagster.yaml"
    wanted = instance_config(profile)
    current = cfg.read_text() if cfg.exists() else None
    if current is None or (current != wanted and (current.startswith(GENERATED) or current == EARLIER)):
        tmp = cfg.with_suffix(".yaml.tmp")
        tmp.write_text(wanted)
        tmp.replace(cfg)
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
    try:
        profile = load_profile(args.profile)
    except ValueError as exc:  # names the file and the field
        print(exc, file=sys.stderr)
        return 2
    env = {
        **os.environ,
        "DAGSTER_HOME": str(ensure_dagster_home(home, profile)),
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
