"""DuckDB write throughput of the warehouse layer vs a plain ``INSERT … SELECT`` from a registered frame.

The baseline is the least a DuckDB write can do: register the (already prepared) frame and insert it in one
statement. The warehouse layer adds frame preparation (type normalisation, JSON serialisation), schema checks,
staging, the delete/merge step and the row count. Printed: rows/s per mode, the ratio to the baseline measured
in the same run, median and spread of several runs, and the peak RSS of the process.

    python benchmarks/warehouse_bench.py [--rows 100000 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import duckdb
import numpy as np
import pandas as pd

from cdp_assets.shared.warehouse import TableRef, WriteMode, WritePlan
from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse
from cdp_assets.shared.warehouse.types import prepare_frame


def make_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64"),
            "user_id": [f"u{i % 50_000:07d}" for i in range(n)],
            "event": rng.choice(["page", "track", "identify"], n),
            "amount": rng.random(n) * 100,
            "timestamp": start + pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s"),
            "day": [dt.date(2024, 1, 1 + i % 28) for i in range(n)],
            "properties": [f'{{"k": {i % 97}, "tag": "t{i % 13}"}}' for i in range(n)],
        }
    )


def baseline(path: Path, frame: pd.DataFrame) -> None:
    """One CREATE TABLE + INSERT … SELECT from the registered frame (prepared outside the timing)."""
    con = duckdb.connect(str(path))
    con.register("frame", frame)
    con.execute("CREATE OR REPLACE TABLE t AS SELECT * FROM frame LIMIT 0")
    con.execute("INSERT INTO t SELECT * FROM frame")
    con.close()


TABLE = TableRef("bench", "events")


def layer(mode: WriteMode) -> Callable[[Path, pd.DataFrame], None]:
    def run(path: Path, df: pd.DataFrame) -> None:
        DuckDBWarehouse(database=str(path)).write(df, WritePlan(TABLE, mode, ("id",) if mode is WriteMode.MERGE else ()))

    return run


def half_loaded(path: Path, df: pd.DataFrame) -> None:
    """Untimed set-up for merge: the table already holds half of the keys (updates + inserts)."""
    DuckDBWarehouse(database=str(path)).write(df.iloc[: len(df) // 2], WritePlan(TABLE, WriteMode.REPLACE))


def measure(fn: Callable[[Path, pd.DataFrame], None], df: pd.DataFrame, repeat: int,
            setup: Callable[[Path, pd.DataFrame], None] | None = None) -> list[float]:
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.duckdb"
            if setup:
                setup(path, df)
            started = time.perf_counter()
            fn(path, df)
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"duckdb {duckdb.__version__}, pandas {pd.__version__}, medians of {args.repeat} runs")
    for n in args.rows:
        df = make_frame(n)
        base = measure(baseline, prepare_frame(df)[0], args.repeat)
        base_rate = n / statistics.median(base)
        print(f"\n{n:,} rows")
        print(f"  {'baseline INSERT…SELECT':<28} {base_rate:>12,.0f} rows/s   1.00   (spread {min(base):.2f}–{max(base):.2f}s)")
        for mode in (WriteMode.REPLACE, WriteMode.APPEND, WriteMode.MERGE):
            t = measure(layer(mode), df, args.repeat, half_loaded if mode is WriteMode.MERGE else None)
            rate = n / statistics.median(t)
            print(f"  {'warehouse ' + mode.value:<28} {rate:>12,.0f} rows/s   {rate / base_rate:.2f}   "
                  f"(spread {min(t):.2f}–{max(t):.2f}s)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process: {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
