"""Run the job ``cdp_everything`` once, as ``cdp-demo`` does, in a fresh process (``test_everything_job``).

    python -m cdp_assets_tests.warehouse.everything_runner RUN_CONFIG.json OUT.json [--fakesnow DIR]

The environment (``CDP_WAREHOUSE``, the warehouse's variables, ``CDP_DATA_DIR``, ``DAGSTER_HOME``) is the
caller's: the code location reads it at import time, so each warehouse gets its own process and the test
process never imports definitions built for another warehouse.

* default: ``demo_job.run_everything``, the demo's own call, with the job's (multi-process) executor in the
  persistent instance at ``DAGSTER_HOME``.
* ``--fakesnow DIR``: the same call with the in-process executor inside ``fakesnow.patch(db_path=DIR)``
  (an in-process patch is invisible to step subprocesses). Two fakesnow differences are worked around here,
  as in the conformance fixtures (see README): staging tables are TRANSIENT, not TEMPORARY, and every
  connection gets the current schema ``PUBLIC`` (fakesnow's MERGE needs one; the product sets none).

Writes ``{"run_id": ..., "success": ...}`` to OUT.json and exits 0 whenever the run was executed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def fakesnow_active(db_path: Path) -> Iterator[None]:
    import fakesnow
    from fakesnow.instance import FakeSnow

    from cdp_assets.shared.warehouse.snowflake import SnowflakeWarehouse

    SnowflakeWarehouse.stage_table_kind = "TRANSIENT"  # fakesnow refuses qualified TEMPORARY tables
    connect = FakeSnow.connect

    def connect_with_schema(self, database=None, schema=None, *args, **kwargs):
        return connect(self, database, schema or "PUBLIC", *args, **kwargs)

    FakeSnow.connect = connect_with_schema
    warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")
    db_path.mkdir(parents=True, exist_ok=True)
    try:
        with fakesnow.patch(db_path=str(db_path)):
            yield
    finally:
        FakeSnow.connect = connect


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_config", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--fakesnow", type=Path, default=None)
    args = parser.parse_args(argv)
    run_config = json.loads(args.run_config.read_text())

    with contextlib.ExitStack() as stack:
        if args.fakesnow is not None:
            stack.enter_context(fakesnow_active(args.fakesnow))
            run_config["execution"] = {"config": {"in_process": {}}}

        from dagster import DagsterInstance

        from cdp_assets import demo_job

        with DagsterInstance.get() as instance:
            result = demo_job.run_everything(instance, run_config, trigger="test")
            args.out.write_text(json.dumps({"run_id": result.run_id, "success": result.success}))
    return 0


if __name__ == "__main__":
    if not os.environ.get("DAGSTER_HOME"):
        sys.exit("DAGSTER_HOME must name the instance folder to record the run in")
    sys.exit(main())
