"""`quant-dag catalog check`: validate the YAML catalog; exit 1 with every problem listed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import ClassVar

from quant_dag.catalog.load import Catalog, CatalogError, load_catalog
from quant_dag.cli.base import CLISubcommand, add_shared_options


def catalog_warnings(cat: Catalog) -> list[str]:
    """Things that validate but hurt reproducibility."""
    out = []
    for section in ("models", "third_party"):
        for entry in getattr(cat, section).values():
            rev = getattr(entry.source, "revision", None)
            if rev is not None and not (len(rev) == 40 and all(c in "0123456789abcdef" for c in rev)):
                where = cat.origin[(section, entry.name)]
                out.append(f"{where}: {entry.name!r}: revision {rev!r} is not a pinned commit sha")
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
        f"{len(cat.third_party)} third-party variants, {len(cat.benchmarks)} benchmark suites, "
        f"{len(cat.studies)} studies, {len(cat.quantized_pairs())} quantized variants to build"
    )
    return 0


class CatalogCommand(CLISubcommand):
    """`catalog` and its subcommands (today only `check`)."""

    name = "catalog"
    subcommands: ClassVar[dict[str, Callable[[argparse.Namespace], int]]] = {"check": cmd_catalog_check}

    def subparser_init(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(self.name, help="work with the YAML catalog")
        sub = parser.add_subparsers(dest="catalog_command", required=True)
        check = sub.add_parser("check", help="validate the catalog; exit 1 with every problem listed")
        add_shared_options(check, "catalog")
        return parser

    def cmd(self, args: argparse.Namespace) -> int:
        return self.subcommands[args.catalog_command](args)
