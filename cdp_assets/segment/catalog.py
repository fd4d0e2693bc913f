"""The 18 Segment Public API objects as data: one row per object (contract ``segment.md`` §4).

Assets, the simulator's routes and the spec tests are all generated from ``CATALOG``; adding a 19th object is
one row here (plus, at most, a simulator route).

Column names stay as the API spells them (camelCase) so a row can be traced back to the API reference; parent
ids injected into fan-out rows use the API's own parameter names (``sourceId``, ``destinationId``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping

from ..shared.warehouse import WriteMode

JSON = "application/json"  # every one of the 18 operations serves it in the current API (contract §2)


class Kind(str, Enum):
    """How an object is read: what drives its request loop."""

    LIST = "list"  # one paginated list call
    FAN_OUT = "fan_out"  # one paginated list call per parent row
    METRICS = "metrics"  # one unpaginated call per parent row, a single object flattened into rows
    USAGE = "usage"  # one paginated call chain per monthly partition (``period``)
    AUDIT = "audit"  # paginated, incremental from a bookmark (``startTime``)


@dataclass(frozen=True)
class SegmentObject:
    name: str
    path: str  # relative to the host; ``{sourceId}``/``{destinationId}`` are filled per parent row
    records: str  # key under ``data`` holding the records (a list, or one object for METRICS)
    primary_key: tuple[str, ...]  # the contract's "PK to use"
    description: str
    kind: Kind = Kind.LIST
    write_mode: WriteMode = WriteMode.REPLACE
    accept: str = JSON
    #: plan- or feature-limited: a 403 means "not entitled", not a credential problem (contract §9)
    gated: bool = False
    #: fan-out parent: catalog object whose rows drive the calls, and {path param: parent column} to inject
    parent: str | None = None
    parent_ids: Mapping[str, str] = field(default_factory=dict)
    #: fixed query parameters sent on every call (besides pagination)
    params: Mapping[str, str] = field(default_factory=dict)
    #: top-level fields holding secrets (hashed or dropped) and settings objects whose secret-like keys are
    sensitive: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()
    #: fields holding an ISO-8601 timestamp or unix seconds, loaded as UTC timestamps
    timestamps: tuple[str, ...] = ()
    epoch_seconds: tuple[str, ...] = ()
    #: fields holding a bigint as a string, loaded as int64
    bigints: tuple[str, ...] = ()

    @property
    def partitioned(self) -> bool:
        return self.kind is Kind.USAGE

    @property
    def paginated(self) -> bool:
        return self.kind is not Kind.METRICS

    @property
    def asset_path(self) -> list[str]:
        return ["segment", self.name]


_MTU = ("anonymous", "anonymousIdentified", "identified", "neverIdentified")
_USAGE = dict(
    kind=Kind.USAGE, write_mode=WriteMode.PARTITION, timestamps=("timestamp",), epoch_seconds=("periodStart", "periodEnd"),
)

CATALOG: tuple[SegmentObject, ...] = (
    SegmentObject(
        "audit_events", "/audit-events", "events", ("id",),
        "Workspace audit trail (last 90 days), loaded incrementally and merged on id.",
        kind=Kind.AUDIT, write_mode=WriteMode.MERGE, gated=True, timestamps=("timestamp",),
    ),
    SegmentObject("catalog_destinations", "/catalog/destinations", "destinationsCatalog", ("id",),
                  "Segment's catalog of destination integrations."),
    SegmentObject("catalog_sources", "/catalog/sources", "sourcesCatalog", ("id",),
                  "Segment's catalog of source integrations."),
    SegmentObject("catalog_warehouses", "/catalog/warehouses", "warehousesCatalog", ("id",),
                  "Segment's catalog of warehouse integrations."),
    SegmentObject(
        "destination_delivery_metrics_summary", "/destinations/{destinationId}/delivery-metrics", "deliveryMetricsSummary",
        ("destinationId", "sourceId", "granularity", "startTime", "endTime", "metricName"),
        "Delivery metrics per destination over an explicit DAY window, one row per metric.",
        kind=Kind.METRICS, write_mode=WriteMode.MERGE, gated=True, parent="destinations",
        parent_ids={"destinationId": "id", "sourceId": "sourceId"}, timestamps=("startTime", "endTime"),
    ),
    SegmentObject(
        "destination_subscriptions", "/destinations/{destinationId}/subscriptions", "subscriptions", ("id",),
        "Actions subscriptions of each destination.",
        kind=Kind.FAN_OUT, gated=True, parent="destinations", parent_ids={"destinationId": "id"},
    ),
    SegmentObject("destinations", "/destinations", "destinations", ("id", "sourceId"),
                  "Destination instances of the workspace, with masked settings scrubbed.", settings=("settings",)),
    SegmentObject("groups", "/groups", "userGroups", ("id",), "IAM user groups of the workspace."),
    SegmentObject(
        "source_connected_destinations", "/sources/{sourceId}/connected-destinations", "destinations", ("id", "sourceId"),
        "Destinations connected to each source.",
        kind=Kind.FAN_OUT, parent="sources", parent_ids={"sourceId": "id"}, settings=("settings",),
    ),
    SegmentObject(
        "source_connected_warehouses", "/sources/{sourceId}/connected-warehouses", "warehouses", ("sourceId", "id"),
        "Warehouses connected to each source (sourceId injected: the item has none).",
        kind=Kind.FAN_OUT, parent="sources", parent_ids={"sourceId": "id"}, settings=("settings",),
    ),
    SegmentObject("sources", "/sources", "sources", ("id",),
                  "Sources of the workspace; write keys are hashed or dropped.",
                  sensitive=("writeKeys",), settings=("settings",)),
    SegmentObject("transformations", "/transformations", "transformations", ("id",),
                  "Protocols transformations of the workspace.", gated=True),
    SegmentObject(
        "usage_api_calls_per_source_daily", "/usage/api-calls/sources/daily", "dailyPerSourceAPICallsUsage",
        ("sourceId", "timestamp"), "Month-to-date API calls per source and day, one partition per month.",
        bigints=("apiCalls",), **{**_USAGE, "epoch_seconds": ()},
    ),
    SegmentObject(
        "usage_api_calls_workspace_daily", "/usage/api-calls/daily", "dailyWorkspaceAPICallsUsage", ("timestamp",),
        "Month-to-date API calls of the workspace per day, one partition per month.",
        bigints=("apiCalls",), **{**_USAGE, "epoch_seconds": ()},
    ),
    SegmentObject(
        "usage_mtu_per_source_daily", "/usage/mtu/sources/daily", "dailyPerSourceMTUUsage", ("sourceId", "timestamp"),
        "Month-to-date tracked users per source and day, one partition per month.", bigints=_MTU, **_USAGE,
    ),
    SegmentObject(
        "usage_mtu_workspace_daily", "/usage/mtu/daily", "dailyWorkspaceMTUUsage", ("timestamp",),
        "Month-to-date tracked users of the workspace per day, one partition per month.", bigints=_MTU, **_USAGE,
    ),
    SegmentObject("users", "/users", "users", ("id",), "Members of the workspace (PII: email)."),
    SegmentObject("warehouses", "/warehouses", "warehouses", ("id",),
                  "Warehouses of the workspace, with settings scrubbed.", settings=("settings",)),
)

BY_NAME: Mapping[str, SegmentObject] = {o.name: o for o in CATALOG}

#: the column a usage partition is written by (a DATE: the first day of the month, the API's ``period``)
PERIOD_COLUMN = "period"


def get(name: str) -> SegmentObject:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown Segment object {name!r}; known: {sorted(BY_NAME)}") from None
