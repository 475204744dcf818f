"""`quant-dag lineage <target>`: where one result came from, read from the Dagster instance.

For a target asset (a full key, or the short form `study/variant/suite` for a benchmark) it lists the target
and everything upstream of it, sources first: the run and time of each asset's latest materialization, the
code version it ran with against the definition's current one, its data version, the few metadata entries
that identify it (recipe hash, AutoRound and vLLM builds, dataset revision, accuracy, ...) and the latest
result of each asset check. Reads the instance only; runs nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from quant_dag.cli.base import CLISubcommand, add_shared_options, resolve_home

PROFILE_HELP = "resource profile the study ran with (default: local-cpu)"


def add_lineage_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("target", help="asset key (benchmark/<model>/<variant>/<suite>) or <study>/<variant>/<suite>")
    add_shared_options(parser, "catalog", "home", "profile", profile_help=PROFILE_HELP)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    return parser


def cmd_lineage(args: argparse.Namespace) -> int:
    """Exit 0 with the lineage, 2 when the target names no asset (or several), 1 without a catalog or instance."""
    # Dagster and the definitions are imported here: the other commands (and --help) start without them
    import dagster as dg

    from quant_dag.catalog.load import CatalogError
    from quant_dag.cli.asset_lineage import TargetError, format_lineage, lineage
    from quant_dag.definitions import build_definitions

    home = resolve_home(args)
    dagster_home = home / "dagster"
    try:
        # the profile matters: endpoint code versions include its vLLM flags, so another one reads as stale
        profile = getattr(args, "profile", None)
        defs = build_definitions(catalog=Path(args.catalog).resolve(), home=home, profile=profile)
    except CatalogError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not dagster_home.is_dir():
        print(
            f"no Dagster instance at {dagster_home}: run a study first (quant-dag demo / quant-dag run)",
            file=sys.stderr,
        )
        return 1
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        rows = lineage(instance, defs, args.target)
    except TargetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        instance.dispose()
    print(json.dumps(rows, indent=2) if args.json else format_lineage(rows), end="\n" if args.json else "")
    return 0


class LineageCommand(CLISubcommand):
    """`lineage <target> [--json]`: a result's upstream chain."""

    name = "lineage"

    def subparser_init(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        help_text = "a result's upstream chain: runs, code versions, recipe hash, vLLM, checks"
        return add_lineage_arguments(subparsers.add_parser(self.name, help=help_text))

    def cmd(self, args: argparse.Namespace) -> int:
        return cmd_lineage(args)


def main_lineage(argv: list[str] | None = None) -> int:
    """`python -m quant_dag.cli.lineage ...`: the same as `quant-dag lineage ...`, with this docstring as help."""
    parser = add_lineage_arguments(argparse.ArgumentParser(prog="quant-dag lineage", description=__doc__))
    return cmd_lineage(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main_lineage())
