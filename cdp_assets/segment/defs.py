"""Everything Dagster needs from the segment folder: the Segment workspace (external), 18 generated assets, their jobs and schedules, and the
``segment`` resource (simulator or live API, chosen by ``CDP_SOURCES``)."""

from __future__ import annotations

import datetime as dt

from dagster import Definitions

from .assets import build_segment_assets, workspace_spec
from .resources import default_segment_resource
from .schedules import JOBS, SCHEDULES


def build_defs(usage_start: str | dt.date | None = None) -> Definitions:
    return Definitions(
        assets=[workspace_spec, *build_segment_assets(usage_start)],
        jobs=list(JOBS),
        schedules=list(SCHEDULES),
        resources={"segment": default_segment_resource()},
    )
