"""`quant-dag report <study>`: write a study's report folder (Markdown, HTML, PNG, Parquet, CSV) from the project
home, with no Dagster run."""

from __future__ import annotations

import argparse
from pathlib import Path

from quant_dag.cli.base import CLISubcommand, add_shared_options, study_args


def cmd_report(args: argparse.Namespace) -> int:
    """Write a study's report folder (Markdown, HTML, PNG, Parquet, CSV) from the project home, no Dagster run."""
    from quant_dag.summary.report import main_table_md, write_report
    from quant_dag.summary.tables import load_catalog_study

    home, cat = study_args(args)
    if cat is None:
        return 2
    data = load_catalog_study(home.root, cat, args.study)
    out = Path(args.out).resolve() if args.out else home.root / "reports" / args.study
    files = write_report(data, out)
    print(main_table_md(data))
    print(f"\n{len(files)} files in {out}: open {out / 'report.html'}")
    return 0


class ReportCommand(CLISubcommand):
    """`report <study> [--out DIR]`."""

    name = "report"

    def subparser_init(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(
            self.name, help="write a study's report folder (Markdown, HTML, PNG, Parquet, CSV)"
        )
        parser.add_argument("study")
        add_shared_options(parser, "catalog", "home")
        parser.add_argument("--out", default=None, help="report folder (default: <home>/reports/<study>)")
        return parser

    def cmd(self, args: argparse.Namespace) -> int:
        return cmd_report(args)
