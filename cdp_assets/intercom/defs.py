"""Everything Dagster needs from the intercom folder: the eight collections, their schedules, the API resource."""

from dagster import Definitions

from .assets import ALL_ASSETS
from .resources import IntercomResource
from .schedules import JOBS, SCHEDULES


def build_defs() -> Definitions:
    return Definitions(
        assets=ALL_ASSETS,
        jobs=JOBS,
        schedules=SCHEDULES,
        resources={"intercom": IntercomResource.from_env()},
    )
