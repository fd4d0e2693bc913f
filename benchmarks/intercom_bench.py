"""Intercom contacts into DuckDB: cdp_assets vs dlt (its best configuration) vs a raw fetch, same simulator.

    .venv/bin/python benchmarks/intercom_bench.py                 # 30,000 and 300,000 contacts, 3 runs each
    .venv/bin/python benchmarks/intercom_bench.py --sizes 30000 --runs 1
    .venv/bin/python benchmarks/intercom_bench.py --contenders raw,cdp_assets   # without dlt

dlt is not a dependency of the project (it is installed only to be measured here). Install it into the
project's environment without moving any existing pin (measured with dlt 1.31.0):

    .venv/bin/pip install -c .ci/constraints.txt "dlt[duckdb,parquet]==1.31.0"

The simulator runs in its own process (``python -m cdp_assets.intercom.simulator``) and is warmed up (every
record rendered once) before any contender runs. Each contender runs in a fresh subprocess so its peak RSS
(``ru_maxrss``) is its own. All three read the same ``GET /contacts?include_merge_history=true`` pages (150
per page, ~1.35 KB a contact), the request the ``intercom/contacts`` asset makes:

* ``raw``: requests + ``orjson.loads`` per page, nothing stored (the ceiling);
* ``cdp_assets``: the ``intercom/contacts`` asset materialized by Dagster into a DuckDB file (initial load).
  Unlike ``raw`` it never decodes a whole page into Python objects: paging reads the few fields it needs
  lazily (simdjson) and a writer thread extracts the rows from the response bodies in DuckDB, mostly outside
  the GIL, so on two cores it can run as fast as the raw fetch (which is one thread doing HTTP + decode);
* ``dlt``: a dlt ``rest_api`` source with a JSON-cursor paginator into DuckDB, ``loader_file_format="parquet"``
  (dlt's fastest configuration; its defaults need GBs of memory at this size, see shared/BENCHMARKS.md).

Every contender's modules are imported before its clock starts, and Dagster and dlt each do one tiny run of
their own machinery first (both import much of it lazily): a long-running step pays that once, not per
record, so the clock covers the load only. dlt is never run with its default loader file format (about
14 GB of memory at 300,000 records).

Printed: records/s (median of the runs, with min-max), ratio to the raw fetch, peak RSS (median; the
process's own high-water mark, ``VmHWM``) and the contender's own CPU seconds over the timed load (median; less
noisy than wall time on a shared machine; the simulator's CPU is not in it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
CONTENDERS = ("raw", "cdp_assets", "dlt")
PARAMS = {"include_merge_history": "true"}  # what the asset asks for (merge lineage), so every contender does
DLT_INSTALL = '.venv/bin/pip install -c .ci/constraints.txt "dlt[duckdb,parquet]==1.31.0"'


# ---------------------------------------------------------------------------------------------- contenders


def run_raw(url: str, workdir: str) -> int:
    import orjson
    import requests

    s = requests.Session()
    s.headers.update({"Authorization": f"Bearer {TOKEN}", "Intercom-Version": "2.16"})
    n, token = 0, None
    while True:
        params = {**PARAMS, "per_page": 150, **({"starting_after": token} if token else {})}
        data = orjson.loads(s.get(url + "/contacts", params=params, timeout=30).content)
        n += len(data["data"])
        token = ((data.get("pages") or {}).get("next") or {}).get("starting_after")
        if not token:
            return n


def run_cdp(url: str, workdir: str) -> int:
    from dagster import DagsterInstance, materialize

    from cdp_assets.intercom.assets import contacts
    from cdp_assets.intercom.resources import IntercomResource
    from cdp_assets.shared.warehouse import TableRef, WarehouseIOManager
    from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse

    wh = DuckDBWarehouse(database=os.path.join(workdir, "cdp.duckdb"))
    with DagsterInstance.ephemeral() as instance:
        result = materialize([contacts], instance=instance, resources={
            "warehouse": wh, "io_manager": WarehouseIOManager(warehouse=wh),
            "intercom": IntercomResource(base_url=url, access_token=TOKEN)})
        assert result.success
    return wh.row_count(TableRef("intercom", "contacts"))


def run_dlt(url: str, workdir: str) -> int:
    import dlt
    from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
    from dlt.sources.rest_api import rest_api_source

    os.environ["DLT_DATA_DIR"] = os.path.join(workdir, "dlt_data")
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    source = rest_api_source({
        "client": {"base_url": url, "auth": {"type": "bearer", "token": TOKEN},
                   "headers": {"Intercom-Version": "2.16"}},
        "resources": [{
            "name": "contacts", "primary_key": "id", "write_disposition": "replace",
            "endpoint": {"path": "contacts", "params": {**PARAMS, "per_page": 150}, "data_selector": "data",
                         "paginator": JSONResponseCursorPaginator(cursor_path="pages.next.starting_after",
                                                                  cursor_param="starting_after")},
        }],
    })
    pipeline = dlt.pipeline("intercom_bench", destination=dlt.destinations.duckdb(os.path.join(workdir, "dlt.duckdb")),
                            dataset_name="intercom", pipelines_dir=os.path.join(workdir, "dlt_pipelines"))
    pipeline.run(source, loader_file_format="parquet")
    with pipeline.sql_client() as client:
        return int(client.execute_sql("SELECT count(*) FROM contacts")[0][0])


RUNNERS = {"raw": run_raw, "cdp_assets": run_cdp, "dlt": run_dlt}


def import_contender(contender: str, workdir: str) -> None:
    """Import everything a contender uses before its clock starts (as ``segment_bench.run_contender`` does).

    Dagster and dlt import much of their machinery lazily, on first use (Dagster: ~480 modules, among them
    SQLAlchemy and Alembic for the instance's storage, ~1.3 s; dlt: its destination and file writers), so
    each also does one tiny run of its own machinery here, into a throwaway file: a long-running deployment
    pays these once per process, not per record."""
    import orjson  # noqa: F401
    import requests  # noqa: F401

    if contender == "cdp_assets":
        from dagster import DagsterInstance, asset, materialize

        import cdp_assets.intercom.assets  # noqa: F401
        import cdp_assets.intercom.resources  # noqa: F401
        from cdp_assets.shared.warehouse import WarehouseIOManager
        from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse

        @asset(key=["warm_up", "one_row"])
        def one_row():
            import pandas as pd

            return pd.DataFrame({"id": ["a"]})

        wh = DuckDBWarehouse(database=os.path.join(workdir, "cdp_warm.duckdb"))
        with DagsterInstance.ephemeral() as instance:
            assert materialize([one_row], instance=instance,
                               resources={"io_manager": WarehouseIOManager(warehouse=wh)}).success
    elif contender == "dlt":
        import dlt
        import dlt.sources.helpers.rest_client.paginators  # noqa: F401
        import dlt.sources.rest_api  # noqa: F401

        warm_db = dlt.destinations.duckdb(os.path.join(workdir, "dlt_warm.duckdb"))
        pipeline = dlt.pipeline("warm_up", destination=warm_db, dataset_name="warm_up",
                                pipelines_dir=os.path.join(workdir, "warm_pipelines"))
        pipeline.run([{"id": "a", "n": 1}], table_name="one_row", loader_file_format="parquet")


def dlt_missing() -> bool:
    try:
        import dlt  # noqa: F401
    except ImportError:
        return True
    return False


def _vm_hwm_mb() -> float:
    """This process image's own peak RSS: ``ru_maxrss`` may carry the forking parent's over ``exec``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(contender: str, url: str) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        if contender == "dlt":
            os.environ["DLT_DATA_DIR"] = os.path.join(workdir, "dlt_data")
            os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
        import_contender(contender, workdir)
        started, cpu_started = time.perf_counter(), time.process_time()
        records = RUNNERS[contender](url, workdir)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak_mb = _vm_hwm_mb()
    print("RESULT " + json.dumps({"records": records, "seconds": seconds, "cpu_s": cpu, "peak_mb": peak_mb}),
          flush=True)


# ---------------------------------------------------------------------------------------------- driver


def start_simulator(contacts: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdp_assets.intercom.simulator", "--contacts", str(contacts), "--token", TOKEN],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline().strip() if proc.stdout else ""
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"simulator did not start: {line!r}")
    return proc, line.split()[1]


def measure(contender: str, url: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", contender, "--url", url], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{contender} failed:\n{out.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="30000,300000")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--child")
    p.add_argument("--url")
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.url)
        return 0
    contenders = args.contenders.split(",")
    if "dlt" in contenders and dlt_missing():
        print("dlt is not installed (it is not a project dependency; it is installed only for this benchmark).\n"
              f"Install it with:\n\n    {DLT_INSTALL}\n\nor leave it out: --contenders raw,cdp_assets",
              file=sys.stderr)
        return 2
    rows = []
    loads: list[tuple[int, tuple[float, float, float]]] = []
    for size in (int(s) for s in args.sizes.split(",")):
        proc, url = start_simulator(size)
        loads.append((size, os.getloadavg()))
        try:
            warm = measure("raw", url)  # renders every record once: all contenders meet a warm server
            print(f"[{size:,}] simulator warmed up ({warm['records']:,} records)", file=sys.stderr)
            results: dict[str, list[dict]] = {c: [] for c in contenders}
            for run in range(args.runs):
                for c in contenders:  # interleaved, so machine noise spreads over everyone
                    r = measure(c, url)
                    assert r["records"] == size, (c, r)
                    results[c].append(r)
                    print(f"[{size:,}] run {run + 1} {c}: {size / r['seconds']:,.0f} rec/s, "
                          f"{r['cpu_s']:.1f} s CPU, {r['peak_mb']:,.0f} MB", file=sys.stderr)
        finally:
            proc.kill()
        loads.append((size, os.getloadavg()))
        rates = {c: [size / r["seconds"] for r in rs] for c, rs in results.items()}
        ceiling = statistics.median(rates["raw"]) if "raw" in rates else None
        for c in contenders:
            med = statistics.median(rates[c])
            rows.append((size, c, med, min(rates[c]), max(rates[c]),
                         med / ceiling if ceiling else float("nan"),
                         statistics.median(r["peak_mb"] for r in results[c]),
                         statistics.median(r["cpu_s"] for r in results[c])))
    print(f"\n{'contacts':>9} {'contender':<11} {'rec/s (median)':>15} {'min-max':>17} {'x raw':>6} {'peak RSS MB':>12}"
          f" {'CPU s':>6}")
    for size, c, med, lo, hi, ratio, mb, cpu in rows:
        print(f"{size:>9,} {c:<11} {med:>15,.0f} {f'{lo:,.0f}-{hi:,.0f}':>17} {ratio:>6.2f} {mb:>12,.0f} {cpu:>6.1f}")
    for size in sorted({s for s, _ in loads}):
        start, end = [la for s, la in loads if s == size]
        print(f"{size:,}: load average (1/5/15 min) {'/'.join(f'{x:.1f}' for x in start)} at the start, "
              f"{'/'.join(f'{x:.1f}' for x in end)} at the end ({os.cpu_count()} CPUs)")
    by = {(s, c): (med, mb) for s, c, med, _, _, _, mb, _ in rows}
    for size in sorted({s for s, *_ in rows}):
        if (size, "cdp_assets") in by and (size, "dlt") in by:
            print(f"{size:,}: cdp_assets is {by[(size, 'cdp_assets')][0] / by[(size, 'dlt')][0]:.1f}x dlt's rate "
                  f"with {by[(size, 'cdp_assets')][1] / by[(size, 'dlt')][1]:.2f}x its peak memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
