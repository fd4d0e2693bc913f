"""The columns each catalog row declares, its definition's ``dagster/column_schema``, are honest: every one is a
property of the record's item schema in the official spec or a listed derived column, and every definition
carries them with its primary key; writes follow the declared types where the values cannot tell. That the
tables have exactly these columns is checked after the full load in ``test_assets``."""

from __future__ import annotations

from typing import Any

import pytest
from dagster import TableSchema

from cdp_assets.segment import catalog
from cdp_assets.segment.assets import build_segment_assets
from cdp_assets.segment.catalog import PERIOD_COLUMN, Kind, SegmentObject, parse_columns
from cdp_assets.segment.extract import ChunkedWriter
from cdp_assets.shared.warehouse import Column, LogicalType
from cdp_assets_tests.openapi_validation import load_spec

_WINDOW = "the requested window, stored with its rows (contract §7)"
_METRIC = "from one entry of the summary's metrics[]: the summary is flattened to one row per metric"

#: Declared columns that are not properties of the record's item schema in the v32 spec, and why. Keep it short:
#: a column in neither place is a typo, or a field nobody has documented.
NOT_IN_SPEC: dict[tuple[str, str], str] = {
    # parent ids injected from the path parameter where the item itself has no such field
    ("source_connected_warehouses", "sourceId"): "injected: WarehouseV1 has no sourceId",
    ("destination_delivery_metrics_summary", "destinationId"): "injected: the summary has no destinationId",
    # the delivery-metrics summary flattened
    ("destination_delivery_metrics_summary", "granularity"): _WINDOW,
    ("destination_delivery_metrics_summary", "startTime"): _WINDOW,
    ("destination_delivery_metrics_summary", "endTime"): _WINDOW,
    ("destination_delivery_metrics_summary", "metricName"): _METRIC,
    ("destination_delivery_metrics_summary", "total"): _METRIC,
    ("destination_delivery_metrics_summary", "breakdown"): _METRIC,
    # secrets: writeKeys is stored only hashed (contract §10)
    ("sources", "writeKeys_sha256"): "writeKeys hashed",
    # drift: newer than the v32 spec (contracts README, known drift)
    ("audit_events", "actorEmail"): "AuditEventV1 gained it (drift item 5)",
    # the month requested, the partition column of the four usage tables (contract §5)
    **{(o.name, PERIOD_COLUMN): "the requested month" for o in catalog.CATALOG if o.kind is Kind.USAGE},
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    """The official spec as plain data, patched in memory as the contracts README prescribes (so every operation
    serves ``application/json``, the media type the client asks for)."""
    with load_spec("segment").spec.open() as contents:
        return contents


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref`` pointers (``#/components/schemas/...``) to the schema they name."""
    while "$ref" in schema:
        target = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def _properties(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema's properties, its ``allOf`` parts' included."""
    schema = _resolve(spec, schema)
    properties = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        properties.update(_properties(spec, part))
    return properties


def record_properties(spec: dict[str, Any], obj: SegmentObject) -> set[str]:
    """The property names of one record of ``obj``: an item of ``data.<records>`` in the 200 response (for
    delivery metrics, the single summary object)."""
    response = spec["paths"][obj.path]["get"]["responses"]["200"]["content"][obj.accept]["schema"]
    records = _resolve(spec, _properties(spec, _properties(spec, response)["data"])[obj.records])
    if records.get("type") == "array":
        records = records["items"]
    return set(_properties(spec, records))


def test_every_declared_column_is_in_the_spec_or_listed_as_derived(spec):
    in_spec = {o.name: record_properties(spec, o) for o in catalog.CATALOG}
    assert all(in_spec.values()), "a record schema without properties: the lookup above is wrong"
    unexplained = [f"{o.name}.{c.name}" for o in catalog.CATALOG for c in o.declared_columns
                   if c.name not in in_spec[o.name] and (o.name, c.name) not in NOT_IN_SPEC]
    assert not unexplained, f"declared, but neither in the spec's record schema nor in NOT_IN_SPEC: {unexplained}"
    # and the list stays as short as it can be: no entry for a column undeclared or in the spec after all
    declared = {(o.name, c.name) for o in catalog.CATALOG for c in o.declared_columns}
    stale = [f"{name}.{column}" for name, column in NOT_IN_SPEC
             if (name, column) not in declared or column in in_spec[name]]
    assert not stale, f"NOT_IN_SPEC entries to remove: {stale}"


def test_every_definition_declares_its_columns_and_primary_key():
    assets = build_segment_assets("2025-06-01")
    assert len(assets) == len(catalog.CATALOG) == 18
    for asset in assets:
        obj = catalog.get(asset.key.path[-1])
        schema = asset.metadata_by_key[asset.key].get("dagster/column_schema")
        assert isinstance(schema, TableSchema), f"{obj.name}: no dagster/column_schema in its definition"
        columns = {c.name: c for c in schema.columns}
        assert [(c.name, c.type) for c in schema.columns] == [(c.name, c.type.value) for c in obj.declared_columns]
        missing = [k for k in obj.primary_key if k not in columns]
        assert not missing, f"{obj.name}: primary key column(s) {missing} not declared"
        assert not any(columns[k].constraints.nullable for k in obj.primary_key), obj.name
        # what the API reference cannot explain, the column's description does
        undescribed = [c for name, c in NOT_IN_SPEC if name == obj.name and not columns[c].description]
        assert not undescribed, f"{obj.name}: derived column(s) {undescribed} without a description"


def test_column_declarations_parse_strictly():
    assert parse_columns(" id  count:bigint\tmetadata:json ") == (
        Column("id", LogicalType.STRING), Column("count", LogicalType.BIGINT), Column("metadata", LogicalType.JSON),
    )
    with pytest.raises(ValueError, match=r"'enabled:bool'.*known: boolean, bigint"):
        parse_columns("id enabled:bool")
    with pytest.raises(ValueError, match="'id' is declared twice"):
        parse_columns("id name id:bigint")


def test_a_new_table_gets_the_declared_types_when_its_first_records_cannot_tell(warehouse):
    groups = catalog.get("groups")
    writer = ChunkedWriter(warehouse, groups)
    writer.add([{"id": "groups-1", "name": None, "memberCount": None, "permissions": None}])  # all NULL
    writer.close()
    written = {c.name: c.type for c in warehouse.columns(writer.table)}
    assert written == {c.name: c.type for c in groups.declared_columns}
