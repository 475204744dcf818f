"""The sandbox fixture: a test that runs model code skips, naming the probe's reason, where no sandbox can run."""

from __future__ import annotations

import pytest

from quant_dag.evaluate.sandbox import sandbox_unavailable


@pytest.fixture
def sandbox() -> None:
    why = sandbox_unavailable()
    if why:
        pytest.skip(f"no sandbox here: {why}")


needs_sandbox = pytest.mark.usefixtures("sandbox")
