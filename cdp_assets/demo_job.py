"""The main job (every asset of the code location) and the demo's table summary."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from dagster import AssetSelection, JobDefinition, define_asset_job

EVERYTHING_JOB_NAME = "cdp_everything"

#: Materializes every asset; partitioned assets take the run's partition (a month).
everything = define_asset_job(
    EVERYTHING_JOB_NAME,
    selection=AssetSelection.all(),
    description="Every asset of the platform: Segment, Intercom, Pub/Sub events, Braze sync tables.",
    tags={"cdp/job": "everything"},
)


def everything_job() -> JobDefinition:
    """Resolved job, for `reconstructable` (the demo runs it in a real multi-process run)."""
    from .definitions import defs

    return defs.resolve_job_def(EVERYTHING_JOB_NAME)


def current_month_key(today: dt.date | None = None) -> str:
    today = today or dt.datetime.now(dt.timezone.utc).date()
    return today.replace(day=1).isoformat()


def print_tables(database: Path) -> None:
    import duckdb

    con = duckdb.connect(str(database), read_only=True)
    try:
        rows = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('information_schema', 'pg_catalog') ORDER BY 1, 2"
        ).fetchall()
        print(f"tables in {database}:")
        for schema, name in rows:
            (count,) = con.execute(f'SELECT COUNT(*) FROM "{schema}"."{name}"').fetchone()
            print(f"  {schema + '.' + name:<52} {count:>10,} rows")
    finally:
        con.close()
