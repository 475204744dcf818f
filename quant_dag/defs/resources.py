"""The one resource the assets share: where the project lives and how steps run there."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from quant_dag.home import ProjectHome
from quant_dag.profiles import ResourceProfile, load_profile


class QuantDag(dg.ConfigurableResource):
    """Project home, catalog and resource profile (resources/<profile>.yaml)."""

    home: str
    catalog: str  # the catalog folder the definitions were built from (shown in the UI)
    profile: str = "local-cpu"

    def paths(self) -> ProjectHome:
        return ProjectHome(Path(self.home))

    def run_profile(self) -> ResourceProfile:
        return load_profile(self.profile)
