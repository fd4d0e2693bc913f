"""The Braze tables on the Braze-readable warehouses' local stand-ins: Snowflake (fakesnow) and BigQuery
(bqemulator). The first run creates the sync tables with Braze's types and NOT NULLs; the contract check
passes; a second run publishes nothing."""

from __future__ import annotations

import uuid

import pytest
from dagster import materialize

from cdp_assets.braze import contract
from cdp_assets.braze.assets import EVENTS_SYNC, USERS_SYNC, braze_cdi_tables, table_of
from cdp_assets.braze.checks import contract_checks
from cdp_assets_tests.warehouse.conftest import BQ_PROJECT, bq_emulator, fake_snowflake  # noqa: F401 (fixtures)

from . import upstream as up


@pytest.fixture(params=["snowflake", "bigquery"])
def warehouse(request):
    if request.param == "snowflake":
        return request.getfixturevalue("fake_snowflake")
    from cdp_assets.shared.warehouse.bigquery import BigQueryWarehouse

    emulator = request.getfixturevalue("bq_emulator")
    return BigQueryWarehouse(
        project=BQ_PROJECT,
        api_endpoint=emulator.endpoint,
        timeout_seconds=60,
        dataset_prefix=f"b{uuid.uuid4().hex[:8]}_",
    )


def test_braze_tables_get_brazes_types_and_pass_the_contract(warehouse):
    up.baseline(warehouse, users=3)
    ddl = contract.create_table_sql(warehouse, table_of(USERS_SYNC))
    expected_types = {
        "snowflake": ("TIMESTAMP_NTZ(9) NOT NULL", "VARCHAR(16777216) NOT NULL"),
        "bigquery": ("TIMESTAMP NOT NULL", "JSON NOT NULL"),
    }[warehouse.kind]
    assert all(t in ddl for t in expected_types)

    result = materialize(
        [braze_cdi_tables, *up.UPSTREAM_SPECS, *contract_checks], resources={"warehouse": warehouse}
    )
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    for key in (USERS_SYNC, EVENTS_SYNC):
        cols = warehouse.columns(table_of(key))
        assert [c.name for c in cols] == list(contract.SYNC_COLUMN_NAMES)
        assert {c.name for c in cols if not c.nullable} == {"UPDATED_AT", "PAYLOAD"}
        assert contract.contract_violations(warehouse, table_of(key)) == []
    users = warehouse.read(table_of(USERS_SYNC))
    assert set(users["EXTERNAL_ID"].dropna()) == {up.uid(n) for n in range(3)}
    assert len(warehouse.read(table_of(EVENTS_SYNC))) == 3 * 2 + 1

    materialize([braze_cdi_tables, *up.UPSTREAM_SPECS], resources={"warehouse": warehouse})
    assert warehouse.row_count(table_of(USERS_SYNC)) == len(users)  # nothing changed, nothing published
