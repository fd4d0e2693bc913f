"""Warehouse layer: one interface (`WarehouseResource`), one implementation per warehouse, one I/O manager."""

from .base import SqlWarehouse, WarehouseResource
from .io_manager import WarehouseIOManager, column_schema, declared_types, table_metadata, write_metadata
from .types import (
    Column,
    JSON_ENCODE_OPTION,
    IdentifierError,
    LogicalType,
    SchemaChangeError,
    Slice,
    TableRef,
    WarehouseError,
    WriteMode,
    WritePlan,
    WriteResult,
)

__all__ = [
    "JSON_ENCODE_OPTION", "Column", "IdentifierError", "LogicalType", "SchemaChangeError", "Slice", "SqlWarehouse", "TableRef",
    "WarehouseError", "WarehouseIOManager", "WarehouseResource", "WriteMode", "WritePlan", "WriteResult",
    "column_schema", "declared_types", "table_metadata", "write_metadata",
]
