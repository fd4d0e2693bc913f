"""One I/O manager for every warehouse: assets say *how* they are written in metadata, not in code.

Asset metadata read here (use ``table_metadata(...)`` to build it):

* ``write_mode``: ``replace`` | ``partition`` | ``merge`` | ``append`` (default ``replace``)
* ``primary_key``: list of columns (required for ``merge``; also used by the generated checks)
* ``partition_column``: the column a partition's slice is selected by (required for ``partition``)

Every materialization records ``dagster/row_count``, ``dagster/column_schema``, ``dagster/table_name``,
``cdp/write_mode`` and how many rows the frame had.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd
from dagster import (
    ConfigurableIOManager,
    InputContext,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
)

from .base import WarehouseResource
from .types import Column, LogicalType, Slice, TableRef, WriteMode, WritePlan, WriteResult

WRITE_MODE = "write_mode"
PRIMARY_KEY = "primary_key"
PARTITION_COLUMN = "partition_column"


def table_metadata(
    write_mode: WriteMode | str = WriteMode.REPLACE,
    primary_key: Sequence[str] = (),
    partition_column: str | None = None,
    columns: Sequence[Column] | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Definition metadata that tells the I/O manager how to write an asset.

    ``columns``, where the table's shape is known before any run, becomes the definition's
    ``dagster/column_schema``: the UI shows the columns of a table never materialized, and column lineage of the
    assets downstream can be checked against it. Each materialization records the columns really written.
    """
    meta: dict[str, Any] = {WRITE_MODE: WriteMode(write_mode).value, PRIMARY_KEY: list(primary_key)}
    if partition_column:
        meta[PARTITION_COLUMN] = partition_column
    if columns is not None:
        meta["dagster/column_schema"] = column_schema(columns, primary_key, descriptions)
    return meta


def column_schema(columns: Sequence[Column], primary_key: Sequence[str] = (), descriptions: Mapping[str, str] | None = None) -> TableSchema:
    descriptions = descriptions or {}
    pk = set(primary_key)
    return TableSchema(
        columns=[
            TableColumn(
                name=c.name,
                type=c.type.value,
                description=descriptions.get(c.name),
                constraints=TableColumnConstraints(nullable=c.name not in pk and c.nullable, unique=False),
            )
            for c in columns
        ]
    )


def declared_types(metadata: Mapping[str, Any] | None) -> dict[str, LogicalType]:
    """The logical types of a definition's ``dagster/column_schema`` (see ``table_metadata``), for
    ``WritePlan.column_types``; empty when the definition declares no schema."""
    value = (metadata or {}).get("dagster/column_schema")
    schema = getattr(value, "schema", value)  # the metadata value wrapper, or the TableSchema itself
    if not isinstance(schema, TableSchema):
        return {}
    return {c.name: LogicalType(c.type) for c in schema.columns if c.type in LogicalType._value2member_map_}


def write_metadata(result: WriteResult, primary_key: Sequence[str] = ()) -> dict[str, Any]:
    """Materialization metadata for one warehouse write (used by the I/O manager and by assets that write
    through the warehouse resource themselves, such as the Pub/Sub loader)."""
    meta: dict[str, Any] = {
        "dagster/row_count": MetadataValue.int(result.row_count),
        "dagster/column_schema": column_schema(result.columns, primary_key),
        "dagster/table_name": MetadataValue.text(result.fqn),
        "cdp/write_mode": MetadataValue.text(result.mode.value),
        "cdp/rows_in_frame": MetadataValue.int(result.rows_in_frame),
    }
    if result.added_columns:
        meta["cdp/added_columns"] = MetadataValue.json(result.added_columns)
    if result.skipped_reason:
        meta["cdp/skipped"] = MetadataValue.text(result.skipped_reason)
    return meta


def _slice_for(context: OutputContext | InputContext, meta: Mapping[str, Any]) -> Slice | None:
    column = meta.get(PARTITION_COLUMN)
    if not column or not context.has_asset_partitions:
        return None
    try:
        window = context.asset_partitions_time_window
        return Slice(column, start=window.start, end=window.end)
    except Exception:  # not a time-window partitioning: static or dynamic keys
        return Slice(column, values=tuple(context.asset_partition_keys))


class WarehouseIOManager(ConfigurableIOManager):
    """Writes DataFrames to the configured warehouse with the asset's declared write mode."""

    warehouse: WarehouseResource

    def handle_output(self, context: OutputContext, obj: pd.DataFrame | None) -> None:
        if obj is None:
            context.log.info("Nothing to write (the asset returned None); the table is unchanged.")
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; expected a DataFrame")
        meta = context.definition_metadata or {}
        mode = WriteMode(meta.get(WRITE_MODE, WriteMode.REPLACE.value))
        pk = tuple(meta.get(PRIMARY_KEY) or ())
        table = TableRef.for_asset_key(context.asset_key.path)
        plan = WritePlan(table, mode, pk, _slice_for(context, meta) if mode is WriteMode.PARTITION else None,
                         column_types=declared_types(meta))
        result = self.warehouse.write(obj, plan)
        if result.skipped_reason:
            context.log.warning(f"{result.fqn}: {result.skipped_reason}")
        context.add_output_metadata(write_metadata(result, pk))

    def load_input(self, context: InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        assert upstream is not None and context.asset_key is not None
        meta = upstream.definition_metadata or {}
        table = TableRef.for_asset_key(context.asset_key.path)
        return self.warehouse.read(table, slice=_slice_for(context, meta))
