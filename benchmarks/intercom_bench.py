"""Intercom contacts into DuckDB: cdp_assets vs dlt (its best configuration) vs a raw fetch, same simulator.

    /work/venv/bin/python benchmarks/intercom_bench.py                 # 30,000 and 300,000 contacts, 3 runs each
    /work/venv/bin/python benchmarks/intercom_bench.py --sizes 30000 --runs 1

The simulator runs in its own process (``python -m cdp_assets.intercom.simulator``) and is warmed up (every
record rendered once) before any contender runs. Each contender runs in a fresh subprocess so its peak RSS
(``ru_maxrss``) is its own. All three read the same ``GET /contacts`` pages (150 per page):

* ``raw``: requests + ``orjson.loads`` per page, nothing stored (the ceiling);
* ``cdp_assets``: the ``intercom/contacts`` asset materialized by Dagster into a DuckDB file (initial load);
* ``dlt``: a dlt ``rest_api`` source with a JSON-cursor paginator into DuckDB, ``loader_file_format="parquet"``
  (dlt's fastest configuration; its defaults need GBs of memory at this size, see shared/BENCHMARKS.md).

Printed: records/s (median of the runs, with min-max), ratio to the raw fetch, peak RSS (median).
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


# ---------------------------------------------------------------------------------------------- contenders


def run_raw(url: str, workdir: str) -> int:
    import orjson
    import requests

    s = requests.Session()
    s.headers.update({"Authorization": f"Bearer {TOKEN}", "Intercom-Version": "2.16"})
    n, token = 0, None
    while True:
        params = {"per_page": 150, **({"starting_after": token} if token else {})}
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
            "endpoint": {"path": "contacts", "params": {"per_page": 150}, "data_selector": "data",
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


def child(contender: str, url: str) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        records = RUNNERS[contender](url, workdir)
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"records": records, "seconds": seconds, "peak_mb": peak_mb}), flush=True)


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
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        proc, url = start_simulator(size)
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
                          f"{r['peak_mb']:,.0f} MB", file=sys.stderr)
        finally:
            proc.kill()
        rates = {c: [size / r["seconds"] for r in rs] for c, rs in results.items()}
        ceiling = statistics.median(rates["raw"]) if "raw" in rates else None
        for c in contenders:
            med = statistics.median(rates[c])
            rows.append((size, c, med, min(rates[c]), max(rates[c]),
                         med / ceiling if ceiling else float("nan"),
                         statistics.median(r["peak_mb"] for r in results[c])))
    print(f"\n{'contacts':>9} {'contender':<11} {'rec/s (median)':>15} {'min-max':>17} {'x raw':>6} {'peak RSS MB':>12}")
    for size, c, med, lo, hi, ratio, mb in rows:
        print(f"{size:>9,} {c:<11} {med:>15,.0f} {f'{lo:,.0f}-{hi:,.0f}':>17} {ratio:>6.2f} {mb:>12,.0f}")
    by = {(s, c): (med, mb) for s, c, med, _, _, _, mb in rows}
    for size in sorted({s for s, *_ in rows}):
        if (size, "cdp_assets") in by and (size, "dlt") in by:
            print(f"{size:,}: cdp_assets is {by[(size, 'cdp_assets')][0] / by[(size, 'dlt')][0]:.1f}x dlt's rate "
                  f"with {by[(size, 'cdp_assets')][1] / by[(size, 'dlt')][1]:.2f}x its peak memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
