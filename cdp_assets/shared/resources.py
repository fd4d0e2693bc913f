"""Per-environment resources: one mapping from ``CDP_WAREHOUSE`` to the warehouse resource.

Source-specific resources (API clients, Pub/Sub) live in their source folders; this module only holds what
every source shares: the warehouse and the I/O manager that writes to it.
"""

from __future__ import annotations

from .env import Warehouse, warehouse
from .warehouse import WarehouseIOManager, WarehouseResource


def warehouse_resource(which: Warehouse | None = None) -> WarehouseResource:
    which = which or warehouse()
    if which is Warehouse.DUCKDB:
        from .warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse()
    if which is Warehouse.SNOWFLAKE:
        from .warehouse.snowflake import SnowflakeWarehouse

        return SnowflakeWarehouse.from_env()
    if which is Warehouse.BIGQUERY:
        from .warehouse.bigquery import BigQueryWarehouse

        return BigQueryWarehouse.from_env()
    from .warehouse.teradata import TeradataWarehouse

    return TeradataWarehouse.from_env()


def shared_resources(which: Warehouse | None = None) -> dict:
    wh = warehouse_resource(which)
    return {"warehouse": wh, "io_manager": WarehouseIOManager(warehouse=wh)}
