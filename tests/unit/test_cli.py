"""`quant-dag` as a package of commands (quant_dag/cli): the parser is built without Dagster (only a command that
needs it imports it), `python -m quant_dag.cli.lineage` runs as `quant-dag lineage`, and the shared options read
the same in every command that takes them."""

from __future__ import annotations

import subprocess
import sys

from quant_dag.cli.main import COMMANDS, build_parser
from quant_dag.home import REPO


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=REPO, check=False)


def test_help_imports_neither_dagster_nor_the_dagster_layer():
    code = (
        "import sys; from quant_dag.cli.main import build_parser; build_parser()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster' or m.startswith('quant_dag.defs')))"
    )
    out = run("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_lineage_module_is_the_lineage_command():
    out = run("-m", "quant_dag.cli.lineage", "--help")
    assert out.returncode == 0 and not out.stderr, out.stderr  # no runpy warning: the package did not import it
    assert out.stdout.startswith("usage: quant-dag lineage ") and "where one result came from" in out.stdout
    assert run("-m", "quant_dag.cli", "lineage", "--help").stdout.split("\n")[:3] == out.stdout.split("\n")[:3]


def test_every_command_is_registered_once_and_shared_options_agree():
    assert [c.name for c in COMMANDS] == ["catalog", "demo", "run", "plan", "report", "lineage"]
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parsers = {**sub.choices, "catalog check": sub.choices["catalog"]._actions[-1].choices["check"]}
    seen: dict[str, tuple[object, str]] = {}
    for name, parser in parsers.items():
        for action in parser._actions:
            if action.dest in ("catalog", "home") and action.option_strings:
                first = seen.setdefault(action.dest, (action.default, action.help))
                assert (action.default, action.help) == first, (name, action.dest)
    assert set(seen) == {"catalog", "home"}


def test_a_study_command_on_a_bad_catalog_names_the_problem_without_a_traceback(tmp_path):
    for command in ("run", "plan", "report"):
        out = run("-m", "quant_dag.cli", command, "demo", "--catalog", str(tmp_path / "missing"))
        assert out.returncode == 2, out.stderr
        assert f"{tmp_path / 'missing'}: catalog directory does not exist" in out.stderr
        assert "Traceback" not in out.stderr
