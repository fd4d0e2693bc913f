"""`cdp-demo`: materialize the whole platform once on the embedded default and say what landed where.

Runs with no credentials and no network: DuckDB under ``data/``, the bundled Segment and Intercom simulators,
and the Google Pub/Sub emulator (started here if it is not running, fed with simulated Segment events).
The run is recorded in a persistent Dagster instance (``data/dagster_home``), so `dagster dev` shows it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time


def _prepare_instance() -> str:
    from .shared.env import data_dir, project_root

    home = os.environ.get("DAGSTER_HOME") or str(data_dir() / "dagster_home")
    os.makedirs(home, exist_ok=True)
    target = os.path.join(home, "dagster.yaml")
    if not os.path.exists(target):
        shutil.copy(project_root() / "dagster.yaml", target)
    os.environ["DAGSTER_HOME"] = home
    return home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="simulated Segment events to publish first")
    args = parser.parse_args(argv)

    os.environ.setdefault("CDP_WAREHOUSE", "duckdb")
    os.environ.setdefault("CDP_SOURCES", "simulated")
    home = _prepare_instance()

    from dagster import DagsterInstance, execute_job, reconstructable

    from .events.demo_feed import publish_demo_events
    from .shared.env import data_dir

    published = publish_demo_events(args.events)
    print(f"published {published:,} simulated Segment events to the Pub/Sub emulator")

    from . import demo_job

    started = time.monotonic()
    with DagsterInstance.get() as instance:
        result = execute_job(
            reconstructable(demo_job.everything_job),
            instance=instance,
            # INFO on the console (progress, row counts, warnings); every DEBUG event is still in the run's log
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            # the usage metrics are monthly: the run takes the current month (execute_job has no partition
            # argument; the partition is the run's `dagster/partition` tag, as for a run launched from the UI)
            tags={"dagster/partition": demo_job.current_month_key(), "cdp/warehouse": "duckdb", "cdp/trigger": "demo"},
        )
        if not result.success:
            failed = [e.step_key for e in result.all_events if e.is_step_failure]
            print(f"the demo run failed in steps: {failed}; see `dagster dev` -> Runs", file=sys.stderr)
            return 1
        print(f"run {result.run_id} succeeded in {time.monotonic() - started:.0f}s\n")
    demo_job.print_tables(data_dir() / "cdp.duckdb")
    print(
        f"\nOpen the UI:  DAGSTER_HOME={home} .venv/bin/dagster dev   (then http://127.0.0.1:3000)\n"
        "The run above is in its Runs page; every table's schema and row count is on its asset page."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
