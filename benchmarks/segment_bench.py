"""Segment load throughput and peak memory vs a raw fetch of the same pages, at size N and 10N.

    python benchmarks/segment_bench.py [--sources 2000 --catalog-scale 40 --repeats 3 --factor 10]

The simulator runs in its own process (identical for every contender, warmed up). Each contender runs in a
fresh subprocess so its peak RSS is its own:

* ``raw``      : requests + ``orjson.loads`` of every page, following ``data.pagination.next`` (the ceiling);
* ``shape``    : the same as ``load`` with the SQL left out (fetch, shape, chunk, frame normalisation): the
                 Segment code path's own speed and memory;
* ``load``     : ``SegmentClient`` + ``extract.load`` into a new DuckDB file (what each asset step does);
* ``dagster``  : ``dagster.materialize`` of the same assets (the load plus Dagster's own run machinery).

Objects read: the two per-source usage objects for one month (sources x days rows each) and the destination
and source catalogs (large nested records). Prints medians (and min-max) of ``--repeats`` runs per size, the
ratio to ``raw`` measured in the same run, and peak RSS per contender at N and at ``--factor`` x N.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere
OBJECTS = ["usage_mtu_per_source_daily", "usage_api_calls_per_source_daily", "catalog_destinations", "catalog_sources"]
#: (path, records key, monthly) per object, spelled out so the raw contender imports nothing but requests and
#: orjson (its peak memory is the floor); ``main`` checks it against the catalog
RAW_ROUTES = {
    "usage_mtu_per_source_daily": ("/usage/mtu/sources/daily", "dailyPerSourceMTUUsage", True),
    "usage_api_calls_per_source_daily": ("/usage/api-calls/sources/daily", "dailyPerSourceAPICallsUsage", True),
    "catalog_destinations": ("/catalog/destinations", "destinationsCatalog", False),
    "catalog_sources": ("/catalog/sources", "sourcesCatalog", False),
}
TOKEN = "bench-token"


def _period() -> dt.date:
    """Last complete month: every day present."""
    return (dt.date.today().replace(day=1) - dt.timedelta(days=1)).replace(day=1)


# ---------------------------------------------------------------------------------------------- contenders


def contender_raw(url: str) -> int:
    import orjson
    import requests

    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"})
    records = 0
    for name in OBJECTS:
        path, key, monthly = RAW_ROUTES[name]
        params = {"period": _period().isoformat()} if monthly else {}
        cursor = None
        while True:
            q = {**params, "pagination.count": 200, **({"pagination.cursor": cursor} if cursor else {})}
            data = orjson.loads(session.get(url + path, params=q).content)["data"]
            records += len(data[key])
            cursor = (data.get("pagination") or {}).get("next")
            if not cursor:
                break
    return records


def contender_load(url: str, db: str, shape_only: bool = False) -> int:
    from cdp_assets.segment.catalog import BY_NAME
    from cdp_assets.segment.client import SegmentClient
    from cdp_assets.segment.extract import load
    from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse
    from cdp_assets.shared.warehouse.types import WriteResult, prepare_frame

    class ShapeOnly(DuckDBWarehouse):
        """Everything up to the warehouse (fetch, shape, chunk, normalise the frame), no SQL: separates the
        Segment code path's memory from the warehouse engine's."""

        def write(self, df, plan):
            frame, cols = prepare_frame(df)
            return WriteResult(self.fqn(plan.table), plan.mode, len(frame), len(frame), cols)

    wh = (ShapeOnly if shape_only else DuckDBWarehouse)(database=db)
    rows = 0
    with SegmentClient(url, TOKEN) as client:
        for name in OBJECTS:
            obj = BY_NAME[name]
            rows += load(client, wh, obj, period=_period() if obj.partitioned else None).rows
    return rows


def contender_dagster(url: str, db: str) -> int:
    import warnings

    from dagster import DagsterInstance, materialize

    from cdp_assets.segment.assets import build_segment_assets
    from cdp_assets.segment.resources import SegmentResource
    from cdp_assets.shared.warehouse import WarehouseIOManager
    from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse

    warnings.simplefilter("ignore")
    wh = DuckDBWarehouse(database=db)
    assets = {a.key.path[-1]: a for a in build_segment_assets(_period() - dt.timedelta(days=40))}
    res = {"segment": SegmentResource(base_url=url, token=TOKEN), "warehouse": wh,
           "io_manager": WarehouseIOManager(warehouse=wh)}
    rows = 0
    with DagsterInstance.ephemeral() as instance:
        for group, key in ((["catalog_destinations", "catalog_sources"], None),
                           (["usage_mtu_per_source_daily", "usage_api_calls_per_source_daily"], _period().isoformat())):
            result = materialize([assets[n] for n in group], resources=res, instance=instance, partition_key=key)
            assert result.success
            for e in result.get_asset_materialization_events():
                rows += e.step_materialization_data.materialization.metadata["cdp/rows_loaded"].value
    return rows


def _vm_hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_contender(which: str, url: str) -> dict:
    """Run in this process (a child): time it and report its own peak RSS."""
    # imports happen before the clock starts: a long-running step pays them once, not per record
    import orjson  # noqa: F401
    import requests  # noqa: F401

    if which != "raw":
        import dagster  # noqa: F401

        import cdp_assets.segment.assets  # noqa: F401
        import cdp_assets.segment.extract  # noqa: F401
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.duckdb")
        started = time.perf_counter()
        if which == "raw":
            records = contender_raw(url)
        elif which == "load":
            records = contender_load(url, db)
        elif which == "shape":
            records = contender_load(url, db, shape_only=True)
        else:
            records = contender_dagster(url, db)
        seconds = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (forked) parent, which would report the
    # driver's memory; VmHWM is this process image's own high-water mark
    peak_mb = _vm_hwm_kb() / 1024
    return {"records": records, "seconds": seconds, "peak_mb": peak_mb}


# ---------------------------------------------------------------------------------------------- driver


def start_simulator(sources: int, scale: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdp_assets.segment.simulator", "--sources", str(sources), "--scale", str(scale),
         "--token", TOKEN, "--page-cache", "100000"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True,
    )
    url = json.loads(proc.stdout.readline())["url"]
    return proc, url


def child(which: str, url: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", which, "--url", url], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{which} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(sources: int, scale: int, repeats: int) -> dict[str, list[dict]]:
    proc, url = start_simulator(sources, scale)
    try:
        child("raw", url)  # warm-up: simulator caches, page cache, imports
        results: dict[str, list[dict]] = {"raw": [], "shape": [], "load": [], "dagster": []}
        for _ in range(repeats):
            for which in results:  # interleaved, so drift on a shared machine hits every contender alike
                results[which].append(child(which, url))
        return results
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def summarize(label: str, results: dict[str, list[dict]]) -> list[str]:
    raw_rate = statistics.median(r["records"] / r["seconds"] for r in results["raw"])
    lines = []
    for which, runs in results.items():
        rates = [r["records"] / r["seconds"] for r in runs]
        peaks = [r["peak_mb"] for r in runs]
        med = statistics.median(rates)
        lines.append(
            f"{label:<4} {which:<8} {runs[0]['records']:>10,} {med:>12,.0f} {min(rates):>10,.0f}-{max(rates):<10,.0f}"
            f"{med / raw_rate:>7.2f} {statistics.median(peaks):>10.0f}"
        )
    return lines


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sources", type=int, default=2000)
    p.add_argument("--catalog-scale", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--repeats-large", type=int, default=1)
    p.add_argument("--factor", type=int, default=10)
    p.add_argument("--child")
    p.add_argument("--url")
    args = p.parse_args()
    if args.child:
        print(json.dumps(run_contender(args.child, args.url)))
        return 0
    from cdp_assets.segment.catalog import BY_NAME

    assert RAW_ROUTES == {n: (BY_NAME[n].path, BY_NAME[n].records, BY_NAME[n].partitioned) for n in OBJECTS}
    header = f"{'size':<4} {'contender':<8} {'records':>10} {'rec/s (med)':>12} {'range':>21} {'x raw':>6} {'peak MB':>10}"
    lines = [header, "-" * len(header)]
    lines += summarize("N", measure(args.sources, args.catalog_scale, args.repeats))
    lines += summarize(f"{args.factor}N", measure(args.sources * args.factor, args.catalog_scale * args.factor,
                                                  args.repeats_large))
    print(f"Segment bench: {', '.join(OBJECTS)}; period {_period()}; pages of 200; "
          f"N = {args.sources} sources, catalog scale {args.catalog_scale}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
