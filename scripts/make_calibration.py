"""Regenerate quant_dag/data/calibration-en.jsonl: English prose from the standard library's docstrings.

Offline calibration data for the demo recipes (no dataset hub here). Each line holds about 2,000
characters so that it survives AutoRound's filter on samples shorter than `seqlen` tokens.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import sys
from pathlib import Path

MODULES = [
    "argparse", "asyncio", "collections", "concurrent.futures", "contextlib", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "email", "fractions", "functools", "heapq", "http.client", "inspect", "io", "itertools",
    "json", "logging", "multiprocessing", "os", "pathlib", "pickle", "queue", "random", "re", "shutil", "socket",
    "sqlite3", "statistics", "string", "subprocess", "tarfile", "textwrap", "threading", "typing", "unittest",
    "urllib.parse", "zipfile",
]  # fmt: skip


def paragraphs() -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for name in MODULES:
        mod = importlib.import_module(name)
        objs = [mod] + [obj for _, obj in sorted(vars(mod).items()) if inspect.isclass(obj) or inspect.isfunction(obj)]
        for obj in objs:
            doc = inspect.getdoc(obj) or ""
            for para in doc.split("\n\n"):
                text = " ".join(para.split())
                # prose only: long enough, mostly letters, not a code sample
                if len(text) < 120 or ">>>" in text or text in seen:
                    continue
                if sum(c.isalpha() or c == " " for c in text) / len(text) < 0.85:
                    continue
                seen.add(text)
                out.append(text)
    return out


def main(dest: Path, line_chars: int = 2000) -> None:
    lines, buf = [], ""
    for para in paragraphs():
        buf = f"{buf} {para}".strip()
        if len(buf) >= line_chars:
            lines.append(buf)
            buf = ""
    dest.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines))
    print(f"{dest}: {len(lines)} samples, {sum(map(len, lines)):,} characters")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "quant_dag/data/calibration-en.jsonl")
