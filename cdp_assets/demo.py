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

    from dagster import DagsterInstance

    from . import demo_job
    from .events.demo_feed import publish_demo_events

    published = publish_demo_events(args.events)
    print(f"published {published:,} simulated Segment events to the Pub/Sub emulator")

    started = time.monotonic()
    with DagsterInstance.get() as instance:
        # INFO on the console (progress, row counts, warnings); every DEBUG event is still in the run's log
        result = demo_job.run_everything(instance, {"loggers": {"console": {"config": {"log_level": "INFO"}}}})
        if not result.success:
            failed = [e.step_key for e in result.all_events if e.is_step_failure]
            print(f"the demo run failed in steps: {failed}; see `dagster dev` -> Runs", file=sys.stderr)
            return 1
        print(f"run {result.run_id} succeeded in {time.monotonic() - started:.0f}s\n")
        demo_job.print_tables(result)
    print(
        f"\nOpen the UI:  DAGSTER_HOME={home} .venv/bin/dagster dev   (then http://127.0.0.1:3000)\n"
        "The run above is in its Runs page; every table's schema and row count is on its asset page."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
