"""Fixtures for the Segment tests: a fresh simulator per test (ephemeral ports), a DuckDB file per test, and
helpers that read tables back as key sets comparable with the simulator's truth."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Iterable

import duckdb
import pandas as pd
import pytest

from cdp_assets.segment.resources import SegmentResource
from cdp_assets.segment.simulator import SegmentSimulator, SimConfig, Workspace, WorkspaceSize
from cdp_assets.shared.warehouse import WarehouseIOManager
from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse

TOKEN = "sgp_test-token-4f1c9e7a2b"
UTC = dt.timezone.utc
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


@pytest.fixture
def sim() -> SegmentSimulator:
    # a frozen clock: the truth (usage days, audit events) cannot move while a test runs
    ws = Workspace(seed=11, size=WorkspaceSize(), now=dt.datetime.now(UTC).replace(microsecond=0))
    with SegmentSimulator(ws, SimConfig(token=TOKEN)) as s:
        yield s


@pytest.fixture
def warehouse(tmp_path) -> DuckDBWarehouse:
    return DuckDBWarehouse(database=str(tmp_path / "warehouse.duckdb"), lock_timeout_seconds=30)


def resources(sim: SegmentSimulator, warehouse: DuckDBWarehouse, **segment: Any) -> dict[str, Any]:
    config = dict(base_url=sim.url, token=TOKEN, backoff_base_seconds=0.01, timeout_seconds=5.0)
    return {
        "segment": SegmentResource(**{**config, **segment}),
        "warehouse": warehouse,
        "io_manager": WarehouseIOManager(warehouse=warehouse),
    }


def norm(value: Any) -> Any:
    """Key values as comparable scalars: timestamps (ISO strings or pandas) as UTC ``pd.Timestamp``."""
    if isinstance(value, str) and _ISO.match(value):
        return pd.Timestamp(value).tz_convert("UTC")
    if isinstance(value, pd.Timestamp):
        return value.tz_convert("UTC") if value.tzinfo else value.tz_localize("UTC")
    if isinstance(value, dt.datetime):
        return pd.Timestamp(value).tz_convert("UTC")
    return value


def norm_keys(keys: Iterable[tuple]) -> set[tuple]:
    return {tuple(norm(v) for v in k) for k in keys}


def table_keys(warehouse: DuckDBWarehouse, name: str, pk: Iterable[str]) -> list[tuple]:
    """Every primary-key tuple of ``segment.<name>``, duplicates included (a list, so tests can see them)."""
    cols = ", ".join(f'"{c}"' for c in pk)
    with duckdb.connect(warehouse.database, read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(f'SELECT {cols} FROM segment."{name}"').fetchall()
    return [tuple(norm(v) for v in r) for r in rows]


def query(warehouse: DuckDBWarehouse, sql: str) -> list[tuple]:
    with duckdb.connect(warehouse.database, read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).fetchall()


def table_exists(warehouse: DuckDBWarehouse, name: str) -> bool:
    return bool(query(warehouse, f"SELECT 1 FROM information_schema.tables WHERE table_schema='segment' AND table_name='{name}'"))
