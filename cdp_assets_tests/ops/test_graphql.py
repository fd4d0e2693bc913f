"""Dagster's own services, started for real, driven by Dagster's own GraphQL client.

A code server (the small test location), the webserver and the daemon run as subprocesses on the project's
local instance configuration (``dagster.yaml``: queued runs, one run of the location at a time). Through
``DagsterGraphQLClient`` the test launches a job and a 3-month partition backfill, follows them to success
and reads back run statuses, materializations, partitions and generated check results; then it looks at
the DuckDB file the runs wrote.
"""

import time
from itertools import pairwise
from pathlib import Path

import duckdb
from dagster_graphql import DagsterGraphQLClient

from .dagster_services import dagster_services

LOCATION = "cdp_assets"  # the name the local instance's run-queue rule is written for
MONTHS = ["2026-01-01", "2026-02-01", "2026-03-01"]
DAYS_IN = {"2026-01-01": 31, "2026-02-01": 28, "2026-03-01": 31}

LAUNCH_BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""

BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status numPartitions runs { runId status tags { key value } } }
  }
}"""

RUNS = """
{ runsOrError { ... on Runs { results { runId status startTime endTime tags { key value } } } } }"""

MATERIALIZATIONS = """
query Mats($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations { partition runId metadataEntries { label ... on IntMetadataEntry { intValue } } }
    }
  }
}"""

CHECKS = """
query Checks($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks { checks { name executionForLatestMaterialization { status } } }
      }
    }
  }
}"""


def _wait(what: str, probe, timeout: float, services):
    """Poll ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1)
    raise TimeoutError(
        f"{what} did not happen in {timeout}s\n--- daemon log ---\n{services.log_tail('daemon')}"
    )


def _rows_written(materializations: list[dict]) -> dict[str, int]:
    """Rows each partition's run wrote (``dagster/row_count`` is the whole table's count after the write)."""
    return {
        m["partition"]: next(e["intValue"] for e in m["metadataEntries"] if e["label"] == "cdp/rows_in_frame")
        for m in materializations
    }


def test_job_and_backfill_through_the_graphql_client(tmp_path: Path):
    data_dir = tmp_path / "data"
    env = {"CDP_DATA_DIR": str(data_dir), "CDP_WAREHOUSE": "duckdb", "CDP_SOURCES": "simulated"}
    location = ["-f", "cdp_assets_tests/ops/tiny_location.py", "-a", "defs"]
    with dagster_services(tmp_path, location, location_name=LOCATION, env=env) as services:
        client = DagsterGraphQLClient("127.0.0.1", port_number=services.webserver_port)

        # 1. a job run: queued, because only the daemon launches queued runs and it is not running yet
        run_id = client.submit_job_execution(
            "tiny_customers_job", repository_location_name=LOCATION, repository_name="__repository__"
        )
        assert client.get_run_status(run_id).value == "QUEUED"

        # 2. a partition backfill of three months (the client has no backfill method: raw GraphQL)
        launched = client._execute(
            LAUNCH_BACKFILL,
            {
                "params": {
                    "assetSelection": [{"path": ["tiny", "daily_usage"]}],
                    "partitionNames": MONTHS,
                    "title": "three months",
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        # 3. the daemon dequeues the run and turns the backfill into runs, one run of the location at a time
        services.start_daemon()
        _wait("job run success", lambda: client.get_run_status(run_id).value == "SUCCESS", 90, services)

        def backfill_done():
            b = client._execute(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
            return (
                b if b["status"] in ("COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED") else None
            )

        backfill = _wait("backfill completion", backfill_done, 120, services)
        assert backfill["status"] == "COMPLETED_SUCCESS" and backfill["numPartitions"] == 3
        assert len(backfill["runs"]) == 3 and all(r["status"] == "SUCCESS" for r in backfill["runs"])
        assert (
            sorted(
                next(t["value"] for t in r["tags"] if t["key"] == "dagster/partition")
                for r in backfill["runs"]
            )
            == MONTHS
        )

        # 4. every run carried its code location tag, and the queue never ran two of them at once
        runs = client._execute(RUNS)["runsOrError"]["results"]
        assert len(runs) == 4 and all(r["status"] == "SUCCESS" for r in runs)
        assert all({"key": "dagster/code_location", "value": LOCATION} in r["tags"] for r in runs)
        spans = sorted((r["startTime"], r["endTime"]) for r in runs)
        assert all(prev_end <= next_start for (_, prev_end), (next_start, _) in pairwise(spans)), spans

        # 5. materializations and their row counts, per partition
        usage = client._execute(MATERIALIZATIONS, {"path": ["tiny", "daily_usage"]})["assetOrError"]
        assert _rows_written(usage["assetMaterializations"]) == {m: 2 * d for m, d in DAYS_IN.items()}
        customers = client._execute(MATERIALIZATIONS, {"path": ["tiny", "customers"]})["assetOrError"]
        assert [m["runId"] for m in customers["assetMaterializations"]] == [run_id]

        # 6. the platform's generated checks ran inside those runs
        checks = client._execute(CHECKS, {"path": ["tiny", "customers"]})["assetNodeOrError"]
        statuses = {
            c["name"]: (c["executionForLatestMaterialization"] or {}).get("status")
            for c in checks["assetChecksOrError"]["checks"]
        }
        assert statuses == {
            "primary_key_unique": "SUCCEEDED",
            "primary_key_not_null": "SUCCEEDED",
            "row_count_shrink": "SUCCEEDED",
        }

    # 7. and the data is in the warehouse the runs wrote
    con = duckdb.connect(str(data_dir / "cdp.duckdb"), read_only=True)
    try:
        by_month = dict(
            con.execute(
                "SELECT strftime(date_trunc('month', day), '%Y-%m-%d'), COUNT(*)"
                " FROM tiny.daily_usage GROUP BY 1"
            ).fetchall()
        )
        assert by_month == {m: 2 * d for m, d in DAYS_IN.items()}
        assert con.execute("SELECT COUNT(*) FROM tiny.customers").fetchone() == (5,)
    finally:
        con.close()
