"""Everything Dagster needs from the braze folder: the CDI sync tables, their contract checks, and the Braze
workspace as the external asset at the end of the lineage graph.

Resources: the shared ``warehouse`` (reads the upstream tables, writes the Braze tables). Automation is on the
assets (``assets.braze_automation``), evaluated by ``braze_automation_sensor``; there is no schedule.
"""

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus, Definitions

from .assets import GROUP, braze_cdi_tables, workspace_spec
from .checks import contract_checks

#: Evaluates the Braze tables' automation condition (``assets.braze_automation``). On by default: without it
#: the Braze tables would only ever be built by hand. Dagster's default automation sensor, which starts
#: stopped, is not created while this one covers every automated asset.
automation_sensor = AutomationConditionSensorDefinition(
    "braze_automation_sensor",
    target=AssetSelection.groups(GROUP),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    run_tags={"cdp/trigger": "braze_automation"},
    description="Builds the Braze sync tables on Braze's 15-minute cadence once an upstream table changed.",
)


def build_defs() -> Definitions:
    return Definitions(assets=[braze_cdi_tables, workspace_spec], asset_checks=contract_checks,
                       sensors=[automation_sensor])
