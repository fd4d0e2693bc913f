"""Concurrency pool limits per external API, applied to a Dagster instance.

Assets that call an API declare ``pool="<api>"``; a pool limit caps how many such steps run at once across
*all* runs of the instance (schedules, sensors and every run of a backfill share it). ``dagster.yaml`` can
only hold a default limit (1, which is also the right limit for any pool not listed here); per-pool limits
are instance state, stored with the event log, so they are set once per instance with::

    DAGSTER_HOME=... python -m cdp_assets.deploy.pools          # same as `dagster instance concurrency set`

Running it again is harmless: it only rewrites limits that differ.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from dagster import DagsterInstance

#: Steps allowed to call each API at once. Each step also paces itself from the API's remaining-budget
#: headers (``shared/http.py``), so these limits keep the number of competing pacers small.
POOL_LIMITS: Mapping[str, int] = {
    # Segment's Public API limits per token and asks for low fan-out concurrency (contract segment.md §8).
    "segment_api": 2,
    # Intercom's budget is per app in 10-second windows; two readers share it without starving each other.
    "intercom_api": 2,
    # Intercom allows one open scroll per app; a second gets 400 "scroll already exists" (intercom.md).
    "intercom_scroll": 1,
    # The Segment events loader drains one subscription and acks only after its warehouse commit: one
    # drainer at a time, so a sensor run and a manual run never ack each other's messages mid-write.
    "pubsub_segment_events": 1,
}


def apply_pool_limits(instance: DagsterInstance, limits: Mapping[str, int] = POOL_LIMITS) -> dict[str, int]:
    """Set each pool's limit on ``instance``; return the pools whose limit changed (name -> new limit)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        raise RuntimeError(
            f"{type(storage).__name__} does not support concurrency pools; use SQLite or PostgreSQL storage"
        )
    current = {p.name: p.limit for p in storage.get_pool_limits() if not p.from_default}
    changed = {}
    for pool, limit in limits.items():
        if current.get(pool) != limit:
            storage.set_concurrency_slots(pool, limit)
            changed[pool] = limit
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Apply cdp_assets' pool limits to the instance at $DAGSTER_HOME."
    )
    parser.parse_args(argv)
    with DagsterInstance.get() as instance:
        changed = apply_pool_limits(instance)
    for pool, limit in POOL_LIMITS.items():
        note = "set" if pool in changed else "unchanged"
        print(f"{pool:<16} {limit}  ({note})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
