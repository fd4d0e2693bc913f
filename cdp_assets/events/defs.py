"""Everything Dagster needs from the events folder: Segment events from Pub/Sub into the event tables."""

from dagster import AssetSelection, Definitions, define_asset_job

from .assets import external_specs, segment_events_load, table_specs
from .resources import PubSubResource
from .sensors import BacklogPolicy, build_backlog_sensor

LOAD_JOB_NAME = "segment_events_load_job"

load_job = define_asset_job(
    LOAD_JOB_NAME,
    selection=AssetSelection.assets(*[s.key for s in table_specs]),
    description="Drain the Segment events Pub/Sub subscription into segment_events/* (started by the backlog sensor).",
    tags={"cdp/job": "segment_events"},
)


def build_defs() -> Definitions:
    return Definitions(
        assets=[*external_specs, segment_events_load],
        jobs=[load_job],
        sensors=[build_backlog_sensor(load_job)],
        resources={"pubsub": PubSubResource.from_env(), "events_backlog": BacklogPolicy()},
    )
