"""DuckDB-only cases the shared suite cannot express."""

from __future__ import annotations

import pandas as pd

from cdp_assets.shared.warehouse import TableRef, WriteMode, WritePlan
from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse


def test_a_schema_named_like_the_database_file_works(tmp_path):
    wh = DuckDBWarehouse(database=str(tmp_path / "segment.duckdb"))  # catalog "segment"
    table = TableRef("segment", "sources")
    wh.write(pd.DataFrame({"id": [1, 2]}), WritePlan(table))
    wh.write(pd.DataFrame({"id": [2, 3]}), WritePlan(table, WriteMode.MERGE, ("id",)))
    assert sorted(wh.read(table)["id"].tolist()) == [1, 2, 3]
    assert wh.fqn(table) == '"segment"."segment"."sources"'
    assert wh.fqn(TableRef("intercom", "contacts")) == '"intercom"."contacts"'
