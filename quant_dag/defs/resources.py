"""The one resource the assets share: where the project lives and how steps run there."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from quant_dag.home import ProjectHome
from quant_dag.procs import ancestor_named, watch_step
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

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """On a cluster, each step watches the node it runs on and its own time limit (procs.watch_step)."""
        cluster = self.run_profile().cluster
        if cluster is None:
            return

        def stop(reason: str) -> None:
            if context.log is not None:
                context.log.error(f"quant-dag stops this step: {reason}")

        watch_step(node_pid=ancestor_named("raylet"), timeout_s=cluster.step_timeout_s, on_fire=stop)
