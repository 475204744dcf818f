"""What every `quant-dag` command shares: the `CLISubcommand` base class (as in vLLM's
`vllm/entrypoints/cli/types.py`), the options several commands take (declared here once), and the study lookup
of the commands that take a study."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from quant_dag.catalog.load import Catalog, CatalogError, load_catalog
from quant_dag.home import ProjectHome, catalog_dir, home_dir

PROFILE_HELP = "resource profile in resources/ (default: local-cpu)"


class CLISubcommand:
    """One `quant-dag` command: `subparser_init` adds its parser to the top-level subparsers and returns it,
    `cmd` runs it on the parsed arguments and returns the exit status. `main.py` registers one object per command.
    """

    name: str

    def subparser_init(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        raise NotImplementedError

    def cmd(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


def add_shared_options(
    parser: argparse.ArgumentParser, *names: str, profile_help: str = PROFILE_HELP
) -> argparse.ArgumentParser:
    """Add the named shared options, in the order named: "catalog" (--catalog), "home" (--home) and "profile"
    (--profile, with `profile_help` saying what the profile means to the command). Defaults are read when the
    parser is built (QUANT_DAG_CATALOG, QUANT_DAG_HOME)."""
    for name in names:
        if name == "catalog":
            parser.add_argument("--catalog", default=str(catalog_dir()), help="catalog folder (default: %(default)s)")
        elif name == "home":
            parser.add_argument(
                "--home",
                default=None,
                help=f"project home (default: $QUANT_DAG_HOME, the profile's cluster.home, or {home_dir()})",
            )
        elif name == "profile":
            parser.add_argument("--profile", default=None, help=profile_help)
        else:
            raise ValueError(f"no shared option {name!r} (known: catalog, home, profile)")
    return parser


def resolve_home(args: argparse.Namespace) -> Path:
    """--home, else QUANT_DAG_HOME, else the profile's cluster.home (shared storage), else .quant-dag."""
    if args.home:
        return Path(args.home).resolve()
    profile_name = getattr(args, "profile", None) or os.environ.get("QUANT_DAG_PROFILE")
    profile_home = None
    if profile_name and not os.environ.get("QUANT_DAG_HOME"):
        from quant_dag.profiles import load_profile

        try:
            cluster = load_profile(profile_name).cluster
        except ValueError:  # the command reports a bad profile where it loads it
            cluster = None
        profile_home = cluster.home if cluster else None
    return home_dir(profile_home)


def study_args(args: argparse.Namespace) -> tuple[ProjectHome, Catalog | None]:
    """The project home and the catalog, or None (with the reason printed) when the catalog does not load or the
    study is not in it."""
    home = ProjectHome(resolve_home(args))
    try:
        cat = load_catalog(args.catalog)
    except CatalogError as exc:  # names the file, entry and field: the message is the answer, not a traceback
        print(exc, file=sys.stderr)
        return home, None
    if args.study not in cat.studies:
        print(f"no study {args.study!r} in {cat.root} (known: {', '.join(cat.studies)})", file=sys.stderr)
        return home, None
    return home, cat
