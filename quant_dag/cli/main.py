"""`quant-dag`: check the catalog, run the demo study, and say how to look at it in the UI."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

from quant_dag.catalog.load import Catalog, CatalogError, load_catalog
from quant_dag.home import REPO, ProjectHome, catalog_dir, home_dir


def catalog_warnings(cat: Catalog) -> list[str]:
    """Things that validate but hurt reproducibility."""
    out = []
    for section in ("models", "third_party"):
        for entry in getattr(cat, section).values():
            rev = getattr(entry.source, "revision", None)
            if rev is not None and not (len(rev) == 40 and all(c in "0123456789abcdef" for c in rev)):
                out.append(f"{cat.origin[(section, entry.name)]}: {entry.name!r}: revision {rev!r} is not a pinned commit sha")
    return out


def cmd_catalog_check(args: argparse.Namespace) -> int:
    try:
        cat = load_catalog(args.catalog)
    except CatalogError as exc:
        print(exc, file=sys.stderr)
        return 1
    for w in catalog_warnings(cat):
        print(f"warning: {w}", file=sys.stderr)
    print(
        f"{cat.root}: ok: {len(cat.models)} models, {len(cat.recipes)} recipes, "
        f"{len(cat.third_party)} third-party variants, {len(cat.benchmarks)} benchmark suites, {len(cat.studies)} studies, "
        f"{len(cat.quantized_pairs())} quantized variants to build"
    )
    return 0


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


def _study_args(args: argparse.Namespace) -> tuple[ProjectHome, Catalog | None]:
    """The project home and the catalog, or None (with the reason printed) when the study is not in it."""
    home = ProjectHome(Path(args.home).resolve())
    cat = load_catalog(args.catalog)
    if args.study not in cat.studies:
        print(f"no study {args.study!r} in {cat.root} (known: {', '.join(cat.studies)})", file=sys.stderr)
        return home, None
    return home, cat


def cmd_run(args: argparse.Namespace) -> int:
    """Materialize one study's assets with the real `dagster job execute` into the persistent instance."""
    from quant_dag.defs.jobs import study_job_name
    from quant_dag.cli.study_status import print_study_status

    home, cat = _study_args(args)
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
        subprocess.call(dagster + ["asset", "materialize", "-m", "quant_dag.definitions", "--select", select], env=env, cwd=REPO)
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


def cmd_report(args: argparse.Namespace) -> int:
    """Write a study's report folder (Markdown, HTML, PNG, Parquet, CSV) from the project home, no Dagster run."""
    from quant_dag.defs.summary import study_served
    from quant_dag.summary.report import main_table_md, write_report
    from quant_dag.summary.tables import load_study

    home, cat = _study_args(args)
    if cat is None:
        return 2
    data = load_study(home.root, study_served(cat, args.study), list(cat.studies[args.study].benchmarks), args.study)
    out = Path(args.out).resolve() if args.out else home.root / "reports" / args.study
    files = write_report(data, out)
    print(main_table_md(data))
    print(f"\n{len(files)} files in {out}: open {out / 'report.html'}")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    """Where one result came from: the target and everything upstream of it, read from the instance."""
    from quant_dag.cli.asset_lineage import cmd_lineage as lineage_main

    return lineage_main(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quant-dag", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    cat = sub.add_parser("catalog", help="work with the YAML catalog")
    cat_sub = cat.add_subparsers(dest="catalog_command", required=True)
    check = cat_sub.add_parser("check", help="validate the catalog; exit 1 with every problem listed")
    check.add_argument("--catalog", default=str(catalog_dir()), help="catalog folder (default: %(default)s)")
    check.set_defaults(func=cmd_catalog_check)

    for name, help_text in (("demo", "run the demo study end to end, offline"), ("run", "materialize one study")):
        p = sub.add_parser(name, help=help_text)
        if name == "run":
            p.add_argument("study")
        else:
            p.set_defaults(study="demo")
        p.add_argument("--catalog", default=str(catalog_dir()), help="catalog folder (default: %(default)s)")
        p.add_argument("--home", default=str(home_dir()), help="project home (default: %(default)s)")
        p.add_argument("--profile", default=None, help="resource profile in resources/ (default: local-cpu)")
        p.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="write a study's report folder (Markdown, HTML, PNG, Parquet, CSV)")
    rep.add_argument("study")
    rep.add_argument("--catalog", default=str(catalog_dir()), help="catalog folder (default: %(default)s)")
    rep.add_argument("--home", default=str(home_dir()), help="project home (default: %(default)s)")
    rep.add_argument("--out", default=None, help="report folder (default: <home>/reports/<study>)")
    rep.set_defaults(func=cmd_report)

    lin = sub.add_parser("lineage", help="a result's upstream chain: runs, code versions, recipe hash, vLLM, checks")
    lin.add_argument("target", help="asset key (benchmark/<model>/<variant>/<suite>) or <study>/<variant>/<suite>")
    lin.add_argument("--catalog", default=str(catalog_dir()), help="catalog folder (default: %(default)s)")
    lin.add_argument("--home", default=str(home_dir()), help="project home (default: %(default)s)")
    lin.add_argument("--profile", default=None, help="resource profile the study ran with (default: local-cpu)")
    lin.add_argument("--json", action="store_true", help="print the rows as JSON")
    lin.set_defaults(func=cmd_lineage)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
