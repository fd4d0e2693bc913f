"""A 12-month backfill of the four usage assets completes against the simulator's rate limits (issue 8).

How it runs: the usage assets declare ``BackfillPolicy.single_run()``, so a 12-month backfill is ONE run over
the partition range (what the UI launches for it, tags ``dagster/asset_partition_range_start|end``). In it,
each asset is one step walking the months in order; steps share the ``segment_api`` pool (limit 2 in
production); here the in-process executor runs one step at a time, the tightest bound. The simulator allows
only 12 requests per 0.5 s window and answers a few requests of every object with 429, so the run is throttled
(429s with msBeforeNext, and pacing) and must still finish with every month's rows.
"""

from __future__ import annotations

import datetime as dt

from dagster import AssetKey, DagsterInstance, materialize

from cdp_assets.segment import catalog
from cdp_assets.segment.assets import build_segment_assets
from cdp_assets.segment.simulator import SegmentSimulator, SimConfig, Workspace, WorkspaceSize

from .conftest import TOKEN, norm_keys, query, resources, table_keys

UTC = dt.timezone.utc


def test_twelve_month_usage_backfill_completes_under_rate_limits(warehouse, tmp_path):
    ws = Workspace(seed=13, size=WorkspaceSize(sources=3), now=dt.datetime.now(UTC).replace(microsecond=0))
    months = ws.usage_months()[-12:]
    usage = [a for a in build_segment_assets(months[0]) if a.partitions_def is not None]
    config = SimConfig(token=TOKEN, rate_limit=12, rate_window_seconds=0.5)
    with SegmentSimulator(ws, config) as sim, DagsterInstance.local_temp(str(tmp_path)) as instance:
        # the window limit pushes back only when requests come fast enough, which a loaded machine may not do:
        # a few rate-limit replies on every usage object guarantee that the run is throttled and must wait
        sim.faults.inject([o.name for o in catalog.CATALOG if o.kind is catalog.Kind.USAGE], "429", "429")
        result = materialize(
            usage, resources=resources(sim, warehouse, page_size=40), instance=instance,
            tags={"dagster/asset_partition_range_start": months[0].isoformat(),
                  "dagster/asset_partition_range_end": months[-1].isoformat()},
        )
        assert result.success
        assert sim.stats.rate_limited >= 8 and sim.faults.pending() == 0  # the API really pushed back
        assert sim.stats.max_in_flight == 1  # bounded: one caller at a time
        requests_made = sim.stats.requests
    for obj in (o for o in catalog.CATALOG if o.kind is catalog.Kind.USAGE):
        periods = [p for (p,) in query(warehouse, f'SELECT DISTINCT period FROM segment."{obj.name}" ORDER BY 1')]
        assert periods == months
        expected = set().union(*(norm_keys(ws.expected_keys(obj.name, period=m)) for m in months))
        keys = table_keys(warehouse, obj.name, obj.primary_key)
        assert len(keys) == len(set(keys)) and set(keys) == expected
        materialized = instance.get_materialized_partitions(AssetKey(obj.asset_path))
        assert materialized == {m.isoformat() for m in months}
    assert requests_made > 12 * 4
