"""What the code location exposes, as one reviewed snapshot: every asset with its group, kinds, owners, deps,
write mode, key, partitions, pools, automation, checks and columns, and every job, schedule and sensor.

Any change to the platform's surface shows up as a diff of ``asset_graph.snapshot.json``. Updating it is a
deliberate act: ``CDP_UPDATE_SNAPSHOT=1 python -m pytest cdp_assets_tests/test_asset_graph_snapshot.py``, then
review and commit the diff with the change that caused it.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

from cdp_assets.shared.env import warehouse

SNAPSHOT = Path(__file__).with_name("asset_graph.snapshot.json")


def _value(meta: dict, key: str):
    value = meta.get(key)
    return getattr(value, "value", value)


def _columns(meta: dict) -> list[str] | None:
    schema = _value(meta, "dagster/column_schema")
    schema = getattr(schema, "schema", schema)
    return [f"{c.name}:{c.type}" for c in schema.columns] if schema is not None else None


def surface() -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from cdp_assets.definitions import defs

        graph = defs.resolve_asset_graph()
        here = warehouse().value  # the warehouse kind follows CDP_WAREHOUSE; the snapshot names it generically
        assets = {}
        for node in sorted(graph.asset_nodes, key=lambda n: n.key.to_user_string()):
            meta = dict(node.metadata)
            assets[node.key.to_user_string()] = {
                "materializable": node.is_materializable,
                "group": node.group_name,
                "kinds": sorted("<warehouse>" if k == here else k for k in node.kinds),
                "owners": list(node.owners),
                "description": bool(node.description),
                "deps": sorted(k.to_user_string() for k in node.parent_keys),
                "write_mode": meta.get("write_mode"),
                "primary_key": meta.get("primary_key"),
                "partitions": type(node.partitions_def).__name__ if node.partitions_def else None,
                "pools": sorted(node.pools or ()),
                "automation": node.automation_condition.get_label() if node.automation_condition else None,
                "checks": sorted(k.name for k in node.check_keys),
                "columns": _columns(meta),
            }
        repo = defs.get_repository_def()
        return {
            "assets": assets,
            "jobs": sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")),
            "schedules": {s.name: s.cron_schedule for s in sorted(repo.schedule_defs, key=lambda s: s.name)},
            "sensors": sorted(s.name for s in repo.sensor_defs),
        }


def test_every_asset_follows_the_conventions():
    for key, a in surface()["assets"].items():
        assert a["group"] and a["owners"] and a["description"], f"{key}: group, owner and description"
        if a["materializable"]:
            assert "<warehouse>" in a["kinds"] and len(a["kinds"]) >= 2, f"{key}: kinds are source + warehouse"
            assert a["write_mode"] and a["columns"], f"{key}: table metadata (write mode, column schema)"
            if a["write_mode"] != "append":  # append-only tables (the Braze sync deltas) have no key of their own
                assert a["primary_key"], f"{key}: a {a['write_mode']} table declares its primary key"
                assert {"primary_key_unique", "primary_key_not_null"} <= set(a["checks"]), f"{key}: key checks"


def test_the_surface_matches_the_reviewed_snapshot():
    current = surface()
    if os.environ.get("CDP_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"snapshot written to {SNAPSHOT.name}: review and commit it")
    assert SNAPSHOT.exists(), f"no {SNAPSHOT.name}: run with CDP_UPDATE_SNAPSHOT=1 once and commit it"
    expected = json.loads(SNAPSHOT.read_text())
    for section in ("jobs", "schedules", "sensors"):
        assert current[section] == expected[section], section
    added = sorted(set(current["assets"]) - set(expected["assets"]))
    removed = sorted(set(expected["assets"]) - set(current["assets"]))
    assert not added and not removed, f"assets added {added}, removed {removed}"
    changed = {k: {f: (expected["assets"][k][f], v) for f, v in a.items() if expected["assets"][k].get(f) != v}
               for k, a in current["assets"].items() if a != expected["assets"][k]}
    assert not changed, f"assets changed (snapshot, now): {json.dumps(changed, indent=1)[:4000]}"


def test_every_automated_asset_is_evaluated_by_a_sensor_that_is_on_by_default():
    """An automation condition does nothing unless a sensor evaluates it; Dagster's default one starts stopped."""
    from dagster import AutomationConditionSensorDefinition, DefaultSensorStatus

    from cdp_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    automated = {n.key for n in graph.asset_nodes if n.automation_condition is not None}
    assert automated, "the Braze tables declare an automation condition"
    covered = set()
    for sensor in defs.get_repository_def().sensor_defs:
        if isinstance(sensor, AutomationConditionSensorDefinition):
            assert sensor.default_status is DefaultSensorStatus.RUNNING, f"{sensor.name} starts stopped"
            covered |= sensor.asset_selection.resolve(graph)
    assert automated <= covered, f"no running sensor evaluates {sorted(k.to_user_string() for k in automated - covered)}"
