"""The code location: each source folder contributes its Definitions; shared resources pick the warehouse."""

from dagster import Definitions

from .braze.defs import build_defs as braze_defs
from .demo_job import everything
from .events.defs import build_defs as events_defs
from .intercom.defs import build_defs as intercom_defs
from .segment.defs import build_defs as segment_defs
from .shared.policies import apply_platform_policies
from .shared.resources import shared_resources

defs = apply_platform_policies(Definitions.merge(
    Definitions(resources=shared_resources(), jobs=[everything]),
    segment_defs(),
    intercom_defs(),
    events_defs(),
    braze_defs(),
))
