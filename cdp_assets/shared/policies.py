"""Platform-wide policies, applied once at the root of the code location (``definitions.py``).

``apply_platform_policies(defs)`` takes the merged Definitions of every source and returns them with

* generated **asset checks** on every warehouse table asset whose metadata declares a ``primary_key``
  (``cdp_assets.shared.checks``: key uniqueness, key not-null, row-count shrink on full refreshes), one
  check definition per asset group; and
* a **freshness policy** on every asset a schedule materializes, derived from the schedule itself: a table is
  late (WARN) when one scheduled refresh has been missed and failing (FAIL) when two have. An asset that
  already declares its own policy keeps it.

Source folders therefore never repeat these concerns: declaring ``table_metadata(..., primary_key=...)`` and a
schedule is enough.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import replace
from itertools import pairwise

from dagster import (
    AssetKey,
    AssetSpec,
    Definitions,
    FreshnessPolicy,
    apply_freshness_policy,
)
from dagster._utils.schedules import cron_string_iterator

from .checks import CheckedTable, build_table_checks, checked_table

#: Ticks sampled per schedule to find its longest gap (400 covers more than a year of hourly ticks' days,
#: or 33 years of monthly ones).
_SAMPLE_TICKS = 400
_SAMPLE_HORIZON = dt.timedelta(days=400)
#: Time a scheduled run may take before the table counts as late.
_RUN_ALLOWANCE = dt.timedelta(hours=1)


def apply_platform_policies(defs: Definitions) -> Definitions:
    """The code location's Definitions with generated checks and freshness policies added."""
    checks = table_checks(defs)
    defs = with_schedule_freshness(defs)
    return Definitions.merge(defs, Definitions(asset_checks=checks)) if checks else defs


# ------------------------------------------------------------------------------------------ checks


def checked_tables(defs: Definitions) -> list[CheckedTable]:
    """Every materializable asset with a declared primary key, minus the generated checks it already defines
    itself (an asset that ships its own ``primary_key_unique`` keeps it; the others are still generated)."""
    graph = defs.resolve_asset_graph()
    own: dict[AssetKey, set[str]] = {}
    for ck in graph.asset_check_keys:
        own.setdefault(ck.asset_key, set()).add(ck.name)
    tables = []
    for node in graph.asset_nodes:
        if not node.is_materializable:
            continue
        t = checked_table(node.key, node.metadata, node.group_name)
        if t is not None:
            t = replace(t, own_checks=frozenset(own.get(t.key, ())))
            if t.check_names():
                tables.append(t)
    return sorted(tables, key=lambda t: t.key.to_user_string())


def table_checks(defs: Definitions) -> list:
    by_group: dict[str, list[CheckedTable]] = {}
    for t in checked_tables(defs):
        by_group.setdefault(t.group, []).append(t)
    return [build_table_checks(tables, f"{group}_table_checks") for group, tables in sorted(by_group.items())]


# ------------------------------------------------------------------------------------------ freshness


def longest_gap(cron: str | Iterable[str], timezone: str | None = None) -> dt.timedelta:
    """The longest time between two consecutive ticks of a schedule (one cron string or several)."""
    crons = [cron] if isinstance(cron, str) else list(cron)
    start = dt.datetime.now(dt.UTC)
    ticks: set[dt.datetime] = set()
    for c in crons:
        for n, tick in enumerate(cron_string_iterator(start.timestamp(), c, timezone or "UTC")):
            if n >= _SAMPLE_TICKS or tick - start > _SAMPLE_HORIZON:
                break
            ticks.add(tick)
    ordered = sorted(ticks)
    return max(b - a for a, b in pairwise(ordered))


def freshness_for_gap(gap: dt.timedelta) -> FreshnessPolicy:
    """WARN once one scheduled refresh is missed, FAIL once two are (plus time for the run itself)."""
    allowance = min(_RUN_ALLOWANCE, gap / 2)
    return FreshnessPolicy.time_window(fail_window=2 * gap + allowance, warn_window=gap + allowance)


def scheduled_gaps(defs: Definitions) -> dict[AssetKey, dt.timedelta]:
    """For each asset some schedule materializes: the longest gap of its most frequent schedule."""
    repo = defs.get_repository_def()
    gaps: dict[AssetKey, dt.timedelta] = {}
    for schedule in repo.schedule_defs:
        if not schedule.has_job:
            continue
        gap = longest_gap(schedule.cron_schedule, schedule.execution_timezone)
        for key in repo.get_job(schedule.job_name).asset_layer.selected_asset_keys:
            gaps[key] = min(gap, gaps.get(key, gap))
    return gaps


def with_schedule_freshness(defs: Definitions) -> Definitions:
    policies: Mapping[AssetKey, FreshnessPolicy] = {
        key: freshness_for_gap(gap) for key, gap in scheduled_gaps(defs).items()
    }
    if not policies:
        return defs

    def attach(spec: AssetSpec) -> AssetSpec:
        policy = policies.get(spec.key)
        return apply_freshness_policy(spec, policy, overwrite_existing=False) if policy else spec

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # map_asset_specs is marked preview; its behaviour is what we want
        return defs.map_asset_specs(func=attach)
