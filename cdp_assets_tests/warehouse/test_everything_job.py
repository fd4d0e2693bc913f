"""The demo's full materialization (job ``cdp_everything``: every asset, all sources) on each local warehouse.

One test per warehouse. The code location reads ``CDP_WAREHOUSE`` and the warehouse's settings at import time,
so each run happens in a fresh process (``everything_runner``) with that warehouse's environment, and this
process never imports definitions built for another warehouse:

* ``duckdb``: a DuckDB file in tmp; the job's multi-process executor (``cdp-demo``'s ``execute_job`` call);
* ``snowflake``: the real ``snowflake-connector-python`` against fakesnow; the in-process executor inside
  ``fakesnow.patch`` (step subprocesses could not see an in-process patch);
* ``bigquery``: ``google-cloud-bigquery`` against bqemulator; the multi-process executor.

Every run gets the same sources: the Segment simulator (seed 7, scale 1), a small Intercom simulator (seed 7)
and the same seeded Segment events, published to a fresh topic of this worker's Pub/Sub emulator. The test
reads the run back from its Dagster instance and every table back from the warehouse. Each warehouse's row
counts, primary-key values and recorded column schemas go to a folder shared by the session's xdist workers;
each test compares its outcome with those of the warehouses that finished before it, so a full session
compares every pair once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import fcntl
import hashlib
import json
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus

from cdp_assets.demo_job import EVERYTHING_JOB_NAME, current_month_key
from cdp_assets.events.resources import PubSubResource
from cdp_assets.events.simulator import SegmentEventFactory, malformed_payloads, publish
from cdp_assets.shared.env import project_root
from cdp_assets.shared.warehouse import TableRef, WarehouseResource
from cdp_assets_tests.events.conftest import pubsub_emulator  # noqa: F401 (fixture)

from .conftest import BQ_PROJECT

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

EVENTS = 400
EVENT_SEED = 20240601
EVENT_USERS = 150  # the shared user universe: these users overlap the Intercom contacts below
# Run config replaces a resource's whole config, so `simulated` must be repeated next to the sizes.
INTERCOM = {"simulated": True, "sim_contacts": 150, "sim_conversations": 12, "sim_companies": 8}
RUN_TIMEOUT_SECONDS = 600

#: Tables that follow the wall clock: delivery metrics of the last 13 whole days and usage of the current
#: month up to today are equal across runs on the same UTC day; the audit events (one every 6 h, last 90
#: days) may gain or lose one while the window slides.
CLOCK_DAY = {
    "segment/destination_delivery_metrics_summary",
    "segment/usage_api_calls_per_source_daily",
    "segment/usage_api_calls_workspace_daily",
    "segment/usage_mtu_per_source_daily",
    "segment/usage_mtu_workspace_daily",
}
CLOCK_SLIDING = {"segment/audit_events"}
#: Braze rejects only rows that break a Braze rule; the simulated sources produce none.
MAY_BE_EMPTY = {"braze/rejects"}
#: Their ``dagster/column_schema`` carries the physical types Braze documents per warehouse, by design
#: (``braze.contract.column_schema``); the column names are compared.
BRAZE_SYNC = {"braze/users_attributes_sync", "braze/custom_events_sync"}
#: Compared across warehouses by these columns instead of the primary key: the Pub/Sub emulator assigns a new
#: ``pubsub_message_id`` at every publish.
COMPARE_BY = {"segment_events/rejected": ("reason", "message_id", "raw_payload_base64")}

Reader = Callable[[], ContextManager[WarehouseResource]]


def _everything() -> tuple[list[AssetKey], dict[AssetKey, tuple[str, ...]]]:
    """The job's asset keys and each one's declared primary key (independent of the warehouse)."""
    from cdp_assets.definitions import defs

    job = defs.resolve_job_def(EVERYTHING_JOB_NAME)
    keys = sorted(job.asset_layer.selected_asset_keys, key=lambda k: k.to_user_string())
    graph = defs.resolve_asset_graph()
    return keys, {k: tuple(graph.get(k).metadata.get("primary_key") or ()) for k in keys}


# ------------------------------------------------------------------------------------------ warehouses
# Each yields (environment of the run, extra runner arguments, reader of the tables afterwards).


@contextlib.contextmanager
def _duckdb(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[dict, list[str], Reader]]:
    from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse

    data = tmp_path / "data"  # the default database is <CDP_DATA_DIR>/cdp.duckdb
    wh = DuckDBWarehouse(database=str(data / "cdp.duckdb"))
    yield {"CDP_WAREHOUSE": "duckdb", "CDP_DATA_DIR": str(data)}, [], lambda: contextlib.nullcontext(wh)


@contextlib.contextmanager
def _snowflake(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[dict, list[str], Reader]]:
    db_path = tmp_path / "fakesnow"  # fakesnow keeps database CDP in CDP.db here, so this process can read it
    env = {
        "CDP_WAREHOUSE": "snowflake", "CDP_DATA_DIR": str(tmp_path / "data"), "SNOWFLAKE_ACCOUNT": "cdptest",
        "SNOWFLAKE_USER": "tester", "SNOWFLAKE_PASSWORD": "not-a-real-secret", "SNOWFLAKE_DATABASE": "CDP",
    }

    @contextlib.contextmanager
    def reader() -> Iterator[WarehouseResource]:
        import fakesnow
        from dagster_snowflake import SnowflakeResource

        from cdp_assets.shared.warehouse.snowflake import SnowflakeWarehouse

        with fakesnow.patch(db_path=str(db_path)):
            yield SnowflakeWarehouse(
                snowflake=SnowflakeResource(account="cdptest", user="tester", password="not-a-real-secret",
                                            database="CDP", schema="PUBLIC", paramstyle="qmark"),
                database="CDP",
            )

    yield env, ["--fakesnow", str(db_path)], reader


@contextlib.contextmanager
def _bigquery(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[dict, list[str], Reader]]:
    from cdp_assets.shared.warehouse.bigquery import BigQueryWarehouse

    emulator = request.getfixturevalue("bq_emulator")
    prefix = f"e{uuid.uuid4().hex[:8]}_"  # the emulator is shared with this worker's other BigQuery tests
    env = {
        "CDP_WAREHOUSE": "bigquery", "CDP_DATA_DIR": str(tmp_path / "data"), "BIGQUERY_PROJECT": BQ_PROJECT,
        "BIGQUERY_API_ENDPOINT": emulator.endpoint, "BIGQUERY_DATASET_PREFIX": prefix,
    }
    wh = BigQueryWarehouse(project=BQ_PROJECT, api_endpoint=emulator.endpoint, dataset_prefix=prefix,
                           timeout_seconds=60)
    yield env, [], lambda: contextlib.nullcontext(wh)


WAREHOUSES = {"duckdb": _duckdb, "snowflake": _snowflake, "bigquery": _bigquery}


# ------------------------------------------------------------------------------------------ the run


def _publish_events(emu) -> dict:
    """The same events for every warehouse (fixed seed) on a fresh topic; returns the Pub/Sub run config."""
    name = f"everything-{uuid.uuid4().hex[:10]}"
    config = {"project": emu.project, "topic": name, "subscription": f"{name}-sub",
              "emulator_host": emu.address, "ack_deadline_seconds": 30}
    pubsub = PubSubResource(**config)
    topic, _ = pubsub.ensure_exists()
    publisher = pubsub.publisher()
    try:
        publish(publisher, topic, SegmentEventFactory(seed=EVENT_SEED, users=EVENT_USERS).payloads(EVENTS))
        publish(publisher, topic, [data for data, _ in malformed_payloads(EVENT_SEED)])
    finally:
        publisher.transport.close()
    return config


def _run(tmp_path: Path, env: dict, extra_args: list[str], pubsub_config: dict) -> tuple[str, float, Path]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((project_root() / "dagster.yaml").read_text())  # the demo's instance
    run_config = {
        "resources": {"pubsub": {"config": pubsub_config}, "intercom": {"config": INTERCOM}},
        "ops": {"segment_events_load": {"config": {"max_seconds": 60.0}}},
        # The job's multi-process executor, forking its steps from a forkserver that has imported the code
        # location: a step starts in well under a second instead of importing Dagster and cdp_assets anew.
        "execution": {"config": {"multiprocess": {
            "start_method": {"forkserver": {"preload_modules": ["cdp_assets.definitions"]}},
        }}},
    }
    (tmp_path / "run_config.json").write_text(json.dumps(run_config))
    out = tmp_path / "result.json"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("CDP_", "SNOWFLAKE_", "BIGQUERY_"))}
    child_env.update(env, DAGSTER_HOME=str(home))
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "cdp_assets_tests.warehouse.everything_runner",
         str(tmp_path / "run_config.json"), str(out), *extra_args],
        cwd=project_root(), env=child_env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0 and out.exists(), (
        f"runner failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return json.loads(out.read_text())["run_id"], elapsed, home


def _run_events(home: Path, run_id: str):
    """The run and its Dagster events, from the instance the runner recorded them in."""
    instance = DagsterInstance.from_config(str(home))
    try:
        run = instance.get_run_by_id(run_id)
        return run, [r.dagster_event for r in instance.all_logs(run_id) if r.dagster_event is not None]
    finally:
        instance.dispose()


def _failure_report(events) -> str:
    lines = []
    for e in events:
        if e.event_type in (DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE):
            err = getattr(e.event_specific_data, "error", None)
            lines.append(f"{e.step_key}: {err.to_string() if err else e.message}")
    return "\n".join(lines)[-8000:]


# ------------------------------------------------------------------------------------------ cross-warehouse


def _plain(v):
    """One value as plain, comparable Python, whichever warehouse returned it."""
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, pd.Timestamp):
        v = v.to_pydatetime()
    if isinstance(v, dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc).isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def _fingerprint(frame: pd.DataFrame) -> str:
    records = frame.itertuples(index=False, name=None)
    rows = sorted(json.dumps([_plain(v) for v in r], default=str) for r in records)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def _shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every xdist worker of this session sees (and no other session)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # workers' basetemps are <session basetemp>/popen-gwN
    path = base / f"everything-job-{os.environ.get('PYTEST_XDIST_TESTRUNUID', 'local')}"
    path.mkdir(exist_ok=True)
    return path


def _record(shared: Path, name: str, outcome: dict) -> dict[str, dict]:
    """Store this warehouse's outcome; return those of the warehouses that finished earlier in the session."""
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        others = {p.stem: json.loads(p.read_text()) for p in shared.glob("*.json") if p.stem != name}
        (shared / f"{name}.json").write_text(json.dumps(outcome))
    return others


def _differences(mine: dict, theirs: dict) -> dict[str, str]:
    diffs = {}
    for table, n in mine["counts"].items():
        m = theirs["counts"].get(table)
        if mine["columns"][table] != theirs["columns"].get(table):
            diffs[table] = f"columns {mine['columns'][table]} vs {theirs['columns'].get(table)}"
        elif table in CLOCK_DAY and theirs["day"] != mine["day"]:
            continue
        elif table in CLOCK_SLIDING:
            if m is None or abs(m - n) > 1:
                diffs[table] = f"rows {n} vs {m}"
        elif m != n:
            diffs[table] = f"rows {n} vs {m}"
        elif mine["keys"].get(table) != theirs["keys"].get(table):
            diffs[table] = f"same row count, different values of {COMPARE_BY.get(table, 'the primary key')}"
    return diffs


# ------------------------------------------------------------------------------------------ the test


@pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")
@pytest.mark.parametrize("name", list(WAREHOUSES))
def test_everything_job_materializes_every_asset(name, tmp_path, tmp_path_factory, request,
                                                 pubsub_emulator):  # noqa: F811
    keys, primary_keys = _everything()
    month = current_month_key()
    with WAREHOUSES[name](tmp_path, request) as (env, extra_args, reader):
        pubsub_config = _publish_events(pubsub_emulator)
        day = dt.datetime.now(dt.timezone.utc).date().isoformat()
        run_id, elapsed, home = _run(tmp_path, env, extra_args, pubsub_config)
        print(f"{name}: cdp_everything took {elapsed:.0f}s (runner process included)")

        run, events = _run_events(home, run_id)
        failures = _failure_report(events)
        assert run.status is DagsterRunStatus.SUCCESS, f"{name}: run {run.status}:\n{failures}"
        assert not failures
        assert run.tags["dagster/partition"] == month and run.tags["cdp/warehouse"] == name

        # every step of the plan ran and succeeded, without a retry
        ran = {e.step_key for e in events if e.event_type is DagsterEventType.STEP_START}
        succeeded = {e.step_key for e in events if e.event_type is DagsterEventType.STEP_SUCCESS}
        retried = {e.step_key for e in events if e.event_type is DagsterEventType.STEP_UP_FOR_RETRY}
        assert ran and ran == succeeded and not retried, (sorted(ran - succeeded), sorted(retried))

        # every asset materialized once, with row count, column schema and this warehouse's table name
        materialized: dict[AssetKey, dict] = {}
        partitions: dict[AssetKey, str | None] = {}
        for e in events:
            if e.event_type is DagsterEventType.ASSET_MATERIALIZATION:
                m = e.event_specific_data.materialization
                assert m.asset_key not in materialized, f"{m.asset_key.to_user_string()} materialized twice"
                materialized[m.asset_key], partitions[m.asset_key] = m.metadata, m.partition
        missing = sorted(k.to_user_string() for k in set(keys) - set(materialized))
        assert set(materialized) == set(keys), f"not materialized: {missing}"
        usage = [k for k in keys if k.path[-1].startswith("usage_")]
        assert len(usage) == 4 and all(partitions[k] == month for k in usage)
        for key, meta in materialized.items():
            assert {"dagster/row_count", "dagster/column_schema"} <= set(meta), (key, sorted(meta))

        checks = [e.event_specific_data for e in events
                  if e.event_type is DagsterEventType.ASSET_CHECK_EVALUATION]
        failed_checks = [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed]
        assert checks and not failed_checks, f"failed checks: {failed_checks}"

        # the tables, read back from the warehouse
        outcome: dict = {"day": day, "counts": {}, "keys": {}, "columns": {}}
        with reader() as wh:
            for key in keys:
                label, table, meta = key.to_user_string(), TableRef.for_asset_key(key.path), materialized[key]
                columns = wh.columns(table)
                assert columns, f"{name}: {wh.fqn(table)} does not exist"
                assert meta["dagster/table_name"].value == wh.fqn(table), label
                n = wh.row_count(table)
                assert n > 0 or label in MAY_BE_EMPTY, f"{name}: {wh.fqn(table)} is empty"
                assert n == meta["dagster/row_count"].value, label
                recorded = {c.name: c.type for c in meta["dagster/column_schema"].schema.columns}
                if label in BRAZE_SYNC:
                    recorded = dict.fromkeys(recorded, "")
                    assert recorded == dict.fromkeys((c.name for c in columns), ""), label
                else:
                    assert recorded == {c.name: c.type.value for c in columns}, label
                pk = primary_keys[key]
                if pk:
                    dupes = int(wh.read(table, columns=list(pk)).duplicated().sum())
                    assert dupes == 0, f"{name}: {wh.fqn(table)} has {dupes} duplicate {list(pk)}"
                if pk or label in COMPARE_BY:
                    compared = list(COMPARE_BY.get(label, pk))
                    outcome["keys"][label] = _fingerprint(wh.read(table, columns=compared))
                outcome["counts"][label] = n
                outcome["columns"][label] = recorded

    counts = outcome["counts"]
    if name != "duckdb":
        assert not (tmp_path / "data" / "cdp.duckdb").exists(), "something wrote the DuckDB default instead"
    # the published events: every good one in exactly one event table, every malformed one rejected
    event_tables = [t for t in counts if t.startswith("segment_events/") and t != "segment_events/rejected"]
    assert sum(counts[t] for t in event_tables) == EVENTS
    assert counts["segment_events/rejected"] == len(malformed_payloads(EVENT_SEED))

    for other, theirs in _record(_shared_dir(tmp_path_factory), name, outcome).items():
        diffs = _differences(outcome, theirs)
        assert not diffs, f"{name} and {other} differ ({name}'s value first): {diffs}"
