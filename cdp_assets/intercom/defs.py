"""Everything Dagster needs from the intercom folder: the Intercom workspace (external) and its eight collections, their schedules, the API resource."""

from dagster import Definitions

from .assets import ALL_ASSETS, workspace_spec
from .resources import IntercomResource
from .schedules import JOBS, SCHEDULES


def build_defs() -> Definitions:
    return Definitions(
        assets=[workspace_spec, *ALL_ASSETS],
        jobs=JOBS,
        schedules=SCHEDULES,
        resources={"intercom": IntercomResource.from_env()},
    )
