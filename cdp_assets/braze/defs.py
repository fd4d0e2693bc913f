"""Everything Dagster needs from the braze folder: the CDI sync tables, their contract checks, and the Braze
workspace as the external asset at the end of the lineage graph.

Resources: the shared ``warehouse`` (reads the upstream tables, writes the Braze tables). Automation is on the
assets (``assets.braze_automation``), so there is no schedule or sensor here.
"""

from dagster import Definitions

from .assets import braze_cdi_tables, workspace_spec
from .checks import contract_checks


def build_defs() -> Definitions:
    return Definitions(assets=[braze_cdi_tables, workspace_spec], asset_checks=contract_checks)
