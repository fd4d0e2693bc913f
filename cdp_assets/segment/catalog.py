"""The 18 Segment Public API objects as data: one row per object (contract ``segment.md`` §4).

Assets, the simulator's routes and the spec tests are all generated from ``CATALOG``; adding a 19th object is
one row here (plus, at most, a simulator route).

Column names stay as the API spells them (camelCase) so a row can be traced back to the API reference; parent
ids injected into fan-out rows use the API's own parameter names (``sourceId``, ``destinationId``).

Each row also declares its table's columns, in a compact ``name[:type]`` string (see ``parse_columns``). The
declaration becomes the asset's definition-level ``dagster/column_schema``; the tests hold it equal to the
columns really written and to the spec's item schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Mapping

from ..shared.warehouse import Column, LogicalType, WriteMode

JSON = "application/json"  # every one of the 18 operations serves it in the current API (contract §2)
#: the column a usage partition is written by (a DATE: the first day of the month, the API's ``period``)
PERIOD_COLUMN = "period"


def parse_columns(declaration: str) -> tuple[Column, ...]:
    """``"id enabled:boolean metadata:json"`` as ``Column``s: whitespace-separated ``name[:type]``, the type a
    ``LogicalType`` value, ``string`` when left out."""
    columns: dict[str, Column] = {}
    for token in declaration.split():
        name, _, type_name = token.partition(":")
        try:
            logical = LogicalType(type_name or LogicalType.STRING.value)
        except ValueError:
            known = ", ".join(t.value for t in LogicalType)
            raise ValueError(f"column {token!r}: unknown type {type_name!r} (known: {known})") from None
        if name in columns:
            raise ValueError(f"column {name!r} is declared twice")
        columns[name] = Column(name, logical)
    return tuple(columns.values())


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
    #: the table's columns as written, ``name[:type]`` in the table's order (``parse_columns``); optional spec
    #: fields the simulator does not serve are left out: they arrive through additive schema evolution
    columns: str
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
    #: descriptions of columns that are not plain API fields (injected path parameters, hashed secrets and
    #: ``period`` get theirs generated, see ``column_descriptions``)
    column_notes: Mapping[str, str] = field(default_factory=dict)

    @property
    def partitioned(self) -> bool:
        return self.kind is Kind.USAGE

    @property
    def paginated(self) -> bool:
        return self.kind is not Kind.METRICS

    @property
    def asset_path(self) -> list[str]:
        return ["segment", self.name]

    @cached_property
    def declared_columns(self) -> tuple[Column, ...]:
        try:
            return parse_columns(self.columns)
        except ValueError as exc:
            raise ValueError(f"segment/{self.name}: {exc}") from None

    @property
    def column_descriptions(self) -> dict[str, str]:
        """Descriptions of the derived columns, for the UI: the API reference explains the others."""
        out = {
            param: f"Injected: the {self.parent_ids[param]} of the segment/{self.parent} row this row was "
                   f"read for (the {param} path parameter)."
            for param in re.findall(r"\{(\w+)\}", self.path)
        }
        for f in self.sensitive:
            out[f"{f}_sha256"] = (f"{f} hashed ('sha256:' and 32 hex digits of the SHA-256); the raw values "
                                  "are never stored. Absent when the segment resource's secrets is 'drop'.")
        if self.partitioned:
            out[PERIOD_COLUMN] = "The usage month requested (its first day, the API's period): the partition."
        return {**out, **self.column_notes}


_MTU = ("anonymous", "anonymousIdentified", "identified", "neverIdentified")
_USAGE = dict(
    kind=Kind.USAGE, write_mode=WriteMode.PARTITION, timestamps=("timestamp",), epoch_seconds=("periodStart", "periodEnd"),
)
_MTU_COLUMNS = ("periodStart:timestamp periodEnd:timestamp anonymous:bigint anonymousIdentified:bigint "
                "identified:bigint neverIdentified:bigint timestamp:timestamp period:date")
_DESTINATION_COLUMNS = "id name enabled:boolean metadata:json sourceId settings:json"  # DestinationV1
_WAREHOUSE_COLUMNS = "id metadata:json workspaceId enabled:boolean settings:json"  # WarehouseV1
_WINDOW = "The requested window (DAY granularity, contract §7), stored with each of its rows."
_METRIC = "From one entry of the summary's metrics (the summary is flattened to one row per metric)."
_METRICS_NOTES = {
    "granularity": _WINDOW, "startTime": _WINDOW, "endTime": _WINDOW,
    "metricName": _METRIC, "total": _METRIC, "breakdown": _METRIC,
}

CATALOG: tuple[SegmentObject, ...] = (
    SegmentObject(
        "audit_events", "/audit-events", "events", ("id",),
        "Workspace audit trail (last 90 days), loaded incrementally and merged on id.",
        columns="id timestamp:timestamp type actor actorEmail resourceId resourceType resourceName",
        kind=Kind.AUDIT, write_mode=WriteMode.MERGE, gated=True, timestamps=("timestamp",),
        column_notes={"actorEmail": "The actor's email (PII); newer than the v32 spec (README drift 5)."},
    ),
    SegmentObject(
        "catalog_destinations", "/catalog/destinations", "destinationsCatalog", ("id",),
        "Segment's catalog of destination integrations.",
        columns="id name description slug logos:json options:json status previousNames:json categories:json "
                "website components:json supportedFeatures:json supportedMethods:json "
                "supportedPlatforms:json actions:json presets:json",
    ),
    SegmentObject(
        "catalog_sources", "/catalog/sources", "sourcesCatalog", ("id",),
        "Segment's catalog of source integrations.",
        columns="id name slug description logos:json options:json categories:json isCloudEventSource:boolean",
    ),
    SegmentObject(
        "catalog_warehouses", "/catalog/warehouses", "warehousesCatalog", ("id",),
        "Segment's catalog of warehouse integrations.",
        columns="id name slug description logos:json options:json",
    ),
    SegmentObject(
        "destination_delivery_metrics_summary", "/destinations/{destinationId}/delivery-metrics", "deliveryMetricsSummary",
        ("destinationId", "sourceId", "granularity", "startTime", "endTime", "metricName"),
        "Delivery metrics per destination over an explicit DAY window, one row per metric.",
        columns="destinationId sourceId destinationMetadataId granularity startTime:timestamp "
                "endTime:timestamp metricName total:double breakdown:json",
        kind=Kind.METRICS, write_mode=WriteMode.MERGE, gated=True, parent="destinations",
        parent_ids={"destinationId": "id", "sourceId": "sourceId"}, timestamps=("startTime", "endTime"),
        column_notes=_METRICS_NOTES,
    ),
    SegmentObject(
        "destination_subscriptions", "/destinations/{destinationId}/subscriptions", "subscriptions", ("id",),
        "Actions subscriptions of each destination.",
        columns="id name actionId actionSlug destinationId enabled:boolean settings:json trigger",
        kind=Kind.FAN_OUT, gated=True, parent="destinations", parent_ids={"destinationId": "id"},
    ),
    SegmentObject("destinations", "/destinations", "destinations", ("id", "sourceId"),
                  "Destination instances of the workspace, with masked settings scrubbed.",
                  columns=_DESTINATION_COLUMNS, settings=("settings",)),
    SegmentObject("groups", "/groups", "userGroups", ("id",), "IAM user groups of the workspace.",
                  columns="id name memberCount:bigint permissions:json"),
    SegmentObject(
        "source_connected_destinations", "/sources/{sourceId}/connected-destinations", "destinations", ("id", "sourceId"),
        "Destinations connected to each source.", columns=_DESTINATION_COLUMNS,
        kind=Kind.FAN_OUT, parent="sources", parent_ids={"sourceId": "id"}, settings=("settings",),
    ),
    SegmentObject(
        "source_connected_warehouses", "/sources/{sourceId}/connected-warehouses", "warehouses", ("sourceId", "id"),
        "Warehouses connected to each source (sourceId injected: the item has none).",
        columns=f"{_WAREHOUSE_COLUMNS} sourceId",
        kind=Kind.FAN_OUT, parent="sources", parent_ids={"sourceId": "id"}, settings=("settings",),
    ),
    SegmentObject("sources", "/sources", "sources", ("id",),
                  "Sources of the workspace; write keys are hashed or dropped.",
                  columns="id slug name metadata:json workspaceId enabled:boolean settings:json labels:json "
                          "writeKeys_sha256:json",
                  sensitive=("writeKeys",), settings=("settings",)),
    SegmentObject("transformations", "/transformations", "transformations", ("id",),
                  "Protocols transformations of the workspace.",
                  columns="id name sourceId enabled:boolean if newEventName propertyRenames:json",
                  gated=True),
    SegmentObject(
        "usage_api_calls_per_source_daily", "/usage/api-calls/sources/daily", "dailyPerSourceAPICallsUsage",
        ("sourceId", "timestamp"), "Month-to-date API calls per source and day, one partition per month.",
        columns="sourceId apiCalls:bigint timestamp:timestamp period:date",
        bigints=("apiCalls",), **{**_USAGE, "epoch_seconds": ()},
    ),
    SegmentObject(
        "usage_api_calls_workspace_daily", "/usage/api-calls/daily", "dailyWorkspaceAPICallsUsage", ("timestamp",),
        "Month-to-date API calls of the workspace per day, one partition per month.",
        columns="apiCalls:bigint timestamp:timestamp period:date",
        bigints=("apiCalls",), **{**_USAGE, "epoch_seconds": ()},
    ),
    SegmentObject(
        "usage_mtu_per_source_daily", "/usage/mtu/sources/daily", "dailyPerSourceMTUUsage", ("sourceId", "timestamp"),
        "Month-to-date tracked users per source and day, one partition per month.",
        columns=f"sourceId {_MTU_COLUMNS}", bigints=_MTU, **_USAGE,
    ),
    SegmentObject(
        "usage_mtu_workspace_daily", "/usage/mtu/daily", "dailyWorkspaceMTUUsage", ("timestamp",),
        "Month-to-date tracked users of the workspace per day, one partition per month.",
        columns=_MTU_COLUMNS, bigints=_MTU, **_USAGE,
    ),
    SegmentObject("users", "/users", "users", ("id",), "Members of the workspace (PII: email).",
                  columns="id name email permissions:json"),
    SegmentObject("warehouses", "/warehouses", "warehouses", ("id",),
                  "Warehouses of the workspace, with settings scrubbed.", columns=_WAREHOUSE_COLUMNS,
                  settings=("settings",)),
)

BY_NAME: Mapping[str, SegmentObject] = {o.name: o for o in CATALOG}


def get(name: str) -> SegmentObject:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown Segment object {name!r}; known: {sorted(BY_NAME)}") from None
