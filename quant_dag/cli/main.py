"""`quant-dag`: check the catalog, run the demo study, and say how to look at it in the UI."""

from __future__ import annotations

import argparse
import sys

from quant_dag.cli.base import CLISubcommand
from quant_dag.cli.catalog_check import CatalogCommand
from quant_dag.cli.lineage import LineageCommand
from quant_dag.cli.plan_study import PlanCommand
from quant_dag.cli.report_folder import ReportCommand
from quant_dag.cli.run_study import DemoCommand, RunCommand

# In the order `quant-dag --help` lists them. A command module imports Dagster only when its command runs.
COMMANDS: list[CLISubcommand] = [
    CatalogCommand(),
    DemoCommand(),
    RunCommand(),
    PlanCommand(),
    ReportCommand(),
    LineageCommand(),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quant-dag", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.subparser_init(subparsers).set_defaults(dispatch_function=command.cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.dispatch_function(args))


if __name__ == "__main__":
    sys.exit(main())
