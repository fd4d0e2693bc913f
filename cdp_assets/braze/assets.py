"""Braze CDI sync tables: one multi-asset that reads the loaded Segment events and Intercom contacts and
publishes ``braze/users_attributes_sync`` and ``braze/custom_events_sync`` (+ their state and the rejects).

Why one non-subsettable multi-asset: the two sync tables share one rejects table, and each sync table must be
written together with its state (a sync row without its state would be published again next run). Keeping the
five tables in one step makes that impossible to get wrong from the UI or from automation; a run with no
upstream change writes nothing, so computing both halves costs only the reads.

Lineage: every output column is mapped to the upstream columns it is computed from (``LINEAGE``); the same
mapping is the definition metadata and the materialization metadata. Columns with no upstream (BRAZE_ID is
always NULL, sync_table is a constant) map to an empty list on purpose.
"""

from typing import Any, Iterator, Mapping, Sequence

import orjson
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableColumnDep,
    TableColumnLineage,
    TableSchema,
    multi_asset,
)

from ..shared.conventions import OWNER, asset_kinds
from ..shared.env import warehouse as configured_warehouse
from ..shared.warehouse import (
    Slice,
    TableRef,
    WarehouseResource,
    WriteMode,
    WritePlan,
    WriteResult,
    table_metadata,
    write_metadata,
)
from . import contract, publish
from .profiles import (
    CONTACT_COLUMNS,
    IDENTIFY_COLUMNS,
    TRACK_COLUMNS,
    build_user_profiles,
    event_rows,
    utc_now,
)

GROUP = "braze"

# ------------------------------------------------------------------------------------------ keys

IDENTIFIES = AssetKey(["segment_events", "identifies"])
TRACKS = AssetKey(["segment_events", "tracks"])
CONTACTS = AssetKey(["intercom", "contacts"])

USERS_SYNC = AssetKey(["braze", "users_attributes_sync"])
USERS_STATE = AssetKey(["braze", "users_attributes_state"])
EVENTS_SYNC = AssetKey(["braze", "custom_events_sync"])
EVENTS_STATE = AssetKey(["braze", "custom_events_state"])
REJECTS = AssetKey(["braze", "rejects"])
WORKSPACE = AssetKey(["braze", "workspace"])
SYNC_KEYS = (USERS_SYNC, EVENTS_SYNC)


def table_of(key: AssetKey) -> TableRef:
    return TableRef.for_asset_key(key.path)


# ------------------------------------------------------------------------------------------ lineage

_I, _T, _C = IDENTIFIES, TRACKS, CONTACTS
#: Upstream columns each Braze column is computed from. The identity inputs (stitching by email included)
#: and the content inputs are named once and reused.
_USER_IDS = [
    (_I, "user_id"),
    (_I, "anonymous_id"),
    (_I, "email"),
    (_C, "external_id"),
    (_C, "email"),
    (_C, "phone"),
]
_USER_CONTENT = [
    (_I, "traits"),
    (_I, "timestamp"),
    (_I, "received_at"),
    (_C, "name"),
    (_C, "role"),
    (_C, "custom_attributes"),
    (_C, "updated_at"),
    (_C, "deleted_at"),
]
_EVENT_IDS = [(_T, "user_id"), (_T, "anonymous_id"), (_T, "email")]
_EVENT_CONTENT = [(_T, "event"), (_T, "timestamp"), (_T, "received_at"), (_T, "properties")]

LINEAGE: dict[AssetKey, dict[str, list[tuple[AssetKey, str]]]] = {
    USERS_SYNC: {
        "UPDATED_AT": _USER_CONTENT,  # moves only when the content hash of these changes
        "EXTERNAL_ID": [(_I, "user_id"), (_C, "external_id"), (_I, "email"), (_C, "email")],
        "ALIAS_NAME": [(_I, "anonymous_id")],
        "ALIAS_LABEL": [(_I, "anonymous_id")],
        "BRAZE_ID": [],
        "EMAIL": [(_C, "email")],
        "PHONE": [(_C, "phone")],
        "PAYLOAD": _USER_CONTENT,
    },
    EVENTS_SYNC: {
        "UPDATED_AT": [(_T, "message_id")],  # set once, when the message id is first published
        "EXTERNAL_ID": [(_T, "user_id")],
        "ALIAS_NAME": [(_T, "anonymous_id")],
        "ALIAS_LABEL": [(_T, "anonymous_id")],
        "BRAZE_ID": [],
        "EMAIL": [(_T, "email")],
        "PHONE": [],
        "PAYLOAD": _EVENT_CONTENT,
    },
    USERS_STATE: {
        "identifier": _USER_IDS,
        "content_hash": _USER_IDS + _USER_CONTENT,
        "attributes": _USER_CONTENT,
        "updated_at": _USER_CONTENT,
    },
    EVENTS_STATE: {"message_id": [(_T, "message_id")], "updated_at": [(_T, "message_id")]},
    REJECTS: {
        "sync_table": [],
        "identifier": _USER_IDS + _EVENT_IDS + [(_T, "message_id"), (_C, "id")],
        "rule": _USER_IDS + _USER_CONTENT + _EVENT_IDS + _EVENT_CONTENT,
        "reason": _USER_IDS + _USER_CONTENT + _EVENT_IDS + _EVENT_CONTENT,
        "content_hash": _USER_IDS + _USER_CONTENT + _EVENT_IDS + _EVENT_CONTENT,
        "external_id": [(_I, "user_id"), (_C, "external_id"), (_T, "user_id")],
        "alias_name": [(_I, "anonymous_id"), (_T, "anonymous_id")],
        "alias_label": [(_I, "anonymous_id"), (_T, "anonymous_id")],
        "email": [(_C, "email"), (_T, "email")],
        "phone": [(_C, "phone")],
        "payload": _USER_CONTENT + _EVENT_CONTENT,
        "payload_bytes": _USER_CONTENT + _EVENT_CONTENT,
        "attribute_count": _USER_CONTENT,
        "source": [(_C, "id")],
        "rejected_at": [],
    },
}


def column_lineage(key: AssetKey) -> TableColumnLineage:
    return TableColumnLineage(
        deps_by_column={
            col: [TableColumnDep(asset_key=k, column_name=c) for k, c in deps]
            for col, deps in LINEAGE[key].items()
        }
    )


# ------------------------------------------------------------------------------------------ schemas

_STATE_SCHEMAS: dict[AssetKey, list[tuple[str, str, str]]] = {
    USERS_STATE: [
        ("identifier", "string", "kind:value of the row's one identifier, e.g. external_id:u0000001"),
        ("content_hash", "string", "sha256 of identifier + canonical attributes last published"),
        ("attributes", "string", "canonical JSON of the attributes last published"),
        ("updated_at", "timestamp", "UPDATED_AT of that publication"),
    ],
    EVENTS_STATE: [
        ("message_id", "string", "Segment messageId of a published event"),
        ("updated_at", "timestamp", "UPDATED_AT it was published with"),
    ],
    REJECTS: [
        (
            c,
            "timestamp"
            if c == "rejected_at"
            else "bigint"
            if c in ("payload_bytes", "attribute_count")
            else "string",
            "",
        )
        for c in publish.REJECT_COLUMNS
    ],
}


def definition_schema(key: AssetKey, kind: str) -> TableSchema:
    if key in SYNC_KEYS:
        return contract.column_schema(kind)
    return TableSchema(columns=[TableColumn(n, t, description=d or None) for n, t, d in _STATE_SCHEMAS[key]])


# ------------------------------------------------------------------------------------------ automation

#: Braze pulls at most every 15 minutes (D.6); recomputing more often only splits one change into batches.
BRAZE_CADENCE = "*/15 * * * *"


def braze_automation(cron: str = BRAZE_CADENCE) -> AutomationCondition:
    """On each cadence tick, run if any upstream table was updated since this asset was last requested or
    updated (or it was never built), every upstream table exists, and nothing upstream (or this asset) is
    running."""
    upstream_changed = AutomationCondition.any_deps_updated().since(
        AutomationCondition.newly_requested() | AutomationCondition.newly_updated()
    )
    return (
        AutomationCondition.cron_tick_passed(cron, cron_timezone="UTC")
        & (upstream_changed | AutomationCondition.missing())
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label(f"braze_cadence({cron})")


# ------------------------------------------------------------------------------------------ specs

_DESCRIPTIONS = {
    USERS_SYNC: "Braze CDI user-attributes table: a row per user whose attributes changed.",
    EVENTS_SYNC: "Braze CDI custom-events table: one row per Segment track event, published once.",
    USERS_STATE: "Last published content hash and attributes per Braze identifier (drives UPDATED_AT).",
    EVENTS_STATE: "Segment message ids already published to braze/custom_events_sync.",
    REJECTS: "Rows that break a Braze rule (identifiers, size, attribute count), whole, with the reason.",
}
_DEPS = {
    USERS_SYNC: [IDENTIFIES, CONTACTS],
    USERS_STATE: [IDENTIFIES, CONTACTS],
    EVENTS_SYNC: [TRACKS],
    EVENTS_STATE: [TRACKS],
    REJECTS: [IDENTIFIES, CONTACTS, TRACKS],
}
_WRITE = {
    USERS_SYNC: table_metadata(WriteMode.APPEND),
    EVENTS_SYNC: table_metadata(WriteMode.APPEND),
    USERS_STATE: table_metadata(WriteMode.MERGE, ["identifier"]),
    EVENTS_STATE: table_metadata(WriteMode.MERGE, ["message_id"]),
    REJECTS: table_metadata(WriteMode.MERGE, publish.REJECT_KEY),
}


def braze_specs(kind: str | None = None) -> list[AssetSpec]:
    kind = kind or configured_warehouse().value
    return [
        AssetSpec(
            key,
            deps=_DEPS[key],
            description=_DESCRIPTIONS[key],
            group_name=GROUP,
            kinds=asset_kinds("braze"),
            owners=[OWNER],
            automation_condition=braze_automation(),
            metadata={
                **_WRITE[key],
                "dagster/column_schema": definition_schema(key, kind),
                "dagster/column_lineage": column_lineage(key),
            },
        )
        for key in (USERS_SYNC, USERS_STATE, EVENTS_SYNC, EVENTS_STATE, REJECTS)
    ]


workspace_spec = AssetSpec(
    WORKSPACE,
    deps=list(SYNC_KEYS),
    description="The Braze workspace: its Cloud Data Ingestion integrations import the braze/*_sync tables.",
    group_name=GROUP,
    kinds={"braze"},
    owners=[OWNER],
    metadata={
        "braze/data_types": MetadataValue.json(
            {k.path[-1]: t for k, t in ((USERS_SYNC, "user attributes"), (EVENTS_SYNC, "custom events"))}
        )
    },
)

# ------------------------------------------------------------------------------------------ the asset


@multi_asset(specs=braze_specs(), name="braze_cdi_tables", can_subset=False)
def braze_cdi_tables(
    context: AssetExecutionContext, warehouse: WarehouseResource
) -> Iterator[MaterializeResult]:
    contract.require_braze_readable(warehouse)
    for key in SYNC_KEYS:
        if contract.ensure_sync_table(warehouse, table_of(key)):
            context.log.info(f"created {warehouse.fqn(table_of(key))} with Braze's column types")
    users = _users_plan(warehouse)
    events = _events_plan(warehouse)
    results: dict[AssetKey, tuple[WriteResult, dict[str, Any]]] = {}
    # Sync rows before state: if the state write fails, the next run publishes the rows again (at least once)
    # rather than never (at most once).
    for sync_key, state_key, plan in ((USERS_SYNC, USERS_STATE, users), (EVENTS_SYNC, EVENTS_STATE, events)):
        results[sync_key] = (_write(warehouse, sync_key, plan.rows), _counts(plan))
        results[state_key] = (_write(warehouse, state_key, plan.state), {})
    rejects = publish.rejects_frame(users.rejects + events.rejects)
    results[REJECTS] = (
        _write(warehouse, REJECTS, rejects),
        {"cdp/rejected_this_run": MetadataValue.int(len(rejects))},
    )
    if len(rejects):
        context.log.warning(
            f"{len(rejects)} row(s) broke a Braze rule and went to braze/rejects: "
            f"{rejects['rule'].value_counts().to_dict()}"
        )
    kind = warehouse.kind
    for key, (result, extra) in results.items():
        meta = write_metadata(result, tuple(_WRITE[key]["primary_key"]))
        meta["dagster/column_schema"] = (
            definition_schema(key, kind) if key in SYNC_KEYS else meta["dagster/column_schema"]
        )
        meta["dagster/column_lineage"] = column_lineage(key)
        yield MaterializeResult(asset_key=key, metadata={**meta, **extra})


def _counts(plan: publish.Plan) -> dict[str, Any]:
    stamp = plan.rows["UPDATED_AT"].iloc[0].isoformat() if len(plan.rows) else None
    return {
        "cdp/published_rows": MetadataValue.int(len(plan.rows)),
        "cdp/unchanged_users": MetadataValue.int(plan.unchanged),
        "cdp/rejected_rows": MetadataValue.int(len(plan.rejects)),
        "cdp/updated_at": MetadataValue.text(stamp or "(nothing published)"),
    }


def _write(wh: WarehouseResource, key: AssetKey, df: pd.DataFrame) -> WriteResult:
    meta = _WRITE[key]
    plan = WritePlan(table_of(key), WriteMode(meta["write_mode"]), tuple(meta["primary_key"]))
    return wh.write(df, plan)


# ------------------------------------------------------------------------------------------ reads


def _read(wh: WarehouseResource, key: AssetKey, columns: Sequence[str]) -> pd.DataFrame:
    return wh.read(table_of(key), columns=list(columns))


def _read_state(wh: WarehouseResource, key: AssetKey, columns: Sequence[str]) -> pd.DataFrame | None:
    return _read(wh, key, columns) if wh.columns(table_of(key)) is not None else None


def _previous_max(wh: WarehouseResource, key: AssetKey) -> Any:
    """The sync table's current maximum UPDATED_AT (the boundary Braze may sync inclusively)."""
    stamps = _read(wh, key, ["UPDATED_AT"])["UPDATED_AT"]
    return stamps.max() if len(stamps) else None


def _users_plan(wh: WarehouseResource) -> publish.Plan:
    profiles, conflicts = build_user_profiles(
        _read(wh, IDENTIFIES, IDENTIFY_COLUMNS), _read(wh, CONTACTS, CONTACT_COLUMNS)
    )
    prior = _read_state(wh, USERS_STATE, ["identifier", "content_hash", "attributes"])
    state: Mapping[str, tuple[str, dict]] = (
        {}
        if prior is None
        else {
            r.identifier: (r.content_hash, orjson.loads(r.attributes)) for r in prior.itertuples(index=False)
        }
    )
    stamp = publish.next_updated_at(_previous_max(wh, USERS_SYNC), utc_now())
    return publish.plan_users("users_attributes_sync", profiles, conflicts, state, stamp)


def _events_plan(wh: WarehouseResource) -> publish.Plan:
    tracks = _read(wh, TRACKS, TRACK_COLUMNS)
    prior = _read_state(wh, EVENTS_STATE, ["message_id"])
    if prior is not None and len(prior):
        tracks = tracks[~tracks["message_id"].isin(prior["message_id"])]
    stamp = publish.next_updated_at(_previous_max(wh, EVENTS_SYNC), utc_now())
    return publish.plan_events("custom_events_sync", event_rows(tracks), stamp)


def latest_batch(wh: WarehouseResource, key: AssetKey, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of the sync table's newest UPDATED_AT (one run's batch)."""
    top = _previous_max(wh, key)
    if top is None:
        return _read(wh, key, columns or contract.SYNC_COLUMN_NAMES).iloc[0:0]
    return wh.read(
        table_of(key),
        columns=list(columns) if columns else None,
        slice=Slice("UPDATED_AT", start=top, end=pd.Timestamp(top) + publish.ONE_TICK),
    )
