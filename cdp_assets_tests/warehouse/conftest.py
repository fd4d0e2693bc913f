"""Backends for the warehouse conformance suite.

``backend`` is parametrized: ``duckdb`` (a file in tmp), ``snowflake`` (the real connector against fakesnow),
``bigquery`` (google-cloud-bigquery against bqemulator, one emulator per test worker). Every test gets its own
schema/dataset name, so tests sharing an emulator never see each other's tables.
"""

from __future__ import annotations

import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from cdp_assets.shared.warehouse import SqlWarehouse, TableRef
from cdp_assets_tests.services import bqemulator

BQ_PROJECT = "cdp-test"


@dataclass
class Backend:
    name: str
    wh: SqlWarehouse
    schema: str

    def table(self, name: str = "t") -> TableRef:
        return TableRef(self.schema, name)


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bqemulator.BqEmulator]:
    with bqemulator.running(BQ_PROJECT, tmp_path_factory.mktemp("bqemulator")) as emulator:
        yield emulator


def duckdb_warehouse(tmp_path: Path):
    from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse

    return DuckDBWarehouse(database=str(tmp_path / "warehouse.duckdb"))


@pytest.fixture
def fake_snowflake(monkeypatch: pytest.MonkeyPatch):
    """fakesnow active for the test; the warehouse as a plain constructor builds it."""
    import fakesnow
    from dagster_snowflake import SnowflakeResource

    from cdp_assets.shared.warehouse.snowflake import SnowflakeWarehouse

    # fakesnow (DuckDB) refuses qualified TEMPORARY tables ("TEMPORARY table names can only use the temp
    # catalog"); Snowflake accepts them. Stage in TRANSIENT tables here only (see README).
    monkeypatch.setattr(SnowflakeWarehouse, "stage_table_kind", "TRANSIENT")
    warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")
    with fakesnow.patch():
        yield SnowflakeWarehouse(
            snowflake=SnowflakeResource(
                account="cdptest",
                user="tester",
                password="not-a-real-secret",
                database="CDP",
                # fakesnow's MERGE creates a helper table in the connection's current schema and fails without
                # one; Snowflake needs no current schema for fully qualified names (see README).
                schema="PUBLIC",
                paramstyle="qmark",
            ),
            database="CDP",
        )


@pytest.fixture(params=["duckdb", "snowflake", "bigquery"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    schema = f"s_{uuid.uuid4().hex[:10]}"
    if request.param == "duckdb":
        return Backend("duckdb", duckdb_warehouse(tmp_path), schema)
    if request.param == "snowflake":
        return Backend("snowflake", request.getfixturevalue("fake_snowflake"), schema)
    from cdp_assets.shared.warehouse.bigquery import BigQueryWarehouse

    emulator = request.getfixturevalue("bq_emulator")
    return Backend("bigquery", BigQueryWarehouse(project=BQ_PROJECT, api_endpoint=emulator.endpoint, timeout_seconds=60), schema)
