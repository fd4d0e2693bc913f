"""The FULL code location's asset graph reads from the source systems to Braze without gaps.

Walks upstream from every Braze asset to the external source assets (Segment's event stream, the Intercom
workspace) and checks every asset on every path in between: explicitly defined by some source folder (not a
stub Dagster invents for an undefined dependency), materializable, and carrying ``dagster/column_schema`` in
its definition metadata. Then checks that each Braze column's lineage names a column the upstream asset's
schema really has, and that the Braze workspace sits downstream of both sync tables.

Fails, naming what is missing, when a source folder stops defining an asset Braze depends on by key.
"""

from __future__ import annotations

import warnings

import pytest
from dagster import AssetKey, AssetsDefinition, AssetSpec, TableColumnLineage, TableSchema

from cdp_assets.braze.assets import CONTACTS, EVENTS_SYNC, IDENTIFIES, LINEAGE, TRACKS, USERS_SYNC, WORKSPACE

#: The external assets Braze data must trace back to (issue 7: "from source system to Braze").
SOURCE_SYSTEMS = {
    AssetKey(["segment", "event_stream"]),
    AssetKey(["segment", "workspace"]),
    AssetKey(["intercom", "workspace"]),
}
UPSTREAM_TABLES = (IDENTIFIES, TRACKS, CONTACTS)


def _raw(value):
    return getattr(value, "value", value)


@pytest.fixture(scope="module")
def graph_and_defined():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from cdp_assets.braze.defs import build_defs as braze
        from cdp_assets.definitions import defs
        from cdp_assets.events.defs import build_defs as events
        from cdp_assets.intercom.defs import build_defs as intercom
        from cdp_assets.segment.defs import build_defs as segment

        defined: set[AssetKey] = set()
        for build in (segment, intercom, events, braze):
            for a in build().assets or []:
                defined |= (
                    {a.key}
                    if isinstance(a, AssetSpec)
                    else set(a.keys)
                    if isinstance(a, AssetsDefinition)
                    else set()
                )
        graph = defs.resolve_asset_graph()
    missing = [k.to_user_string() for k in (*UPSTREAM_TABLES, *SOURCE_SYSTEMS) if k not in defined]
    assert not missing, f"assets Braze depends on by key are not defined by their folders: {missing}"
    return graph, defined


def _schema(node) -> TableSchema | None:
    value = _raw(node.metadata.get("dagster/column_schema"))
    return getattr(value, "schema", value)


def _paths_to_sources(graph, key: AssetKey) -> list[list[AssetKey]]:
    """Every upstream path from ``key`` to a root (an asset without parents), as [root, ..., key]."""
    parents = graph.get(key).parent_keys
    if not parents:
        return [[key]]
    return [path + [key] for p in sorted(parents, key=str) for path in _paths_to_sources(graph, p)]


@pytest.mark.parametrize("braze_key", [USERS_SYNC, EVENTS_SYNC], ids=lambda k: k.to_user_string())
def test_every_path_from_a_source_system_to_braze_is_connected_and_has_column_schema(
    graph_and_defined, braze_key
):
    graph, defined = graph_and_defined
    paths = _paths_to_sources(graph, braze_key)
    roots = {p[0] for p in paths}
    for root in roots:
        node = graph.get(root)
        assert root in defined, (
            f"{root.to_user_string()} is an undefined dependency, not a declared source system"
        )
        assert not node.is_materializable, (
            f"path root {root.to_user_string()} should be an external source asset"
        )
    expected = {AssetKey(["segment", "event_stream"])} | (
        {AssetKey(["intercom", "workspace"])} if braze_key == USERS_SYNC else set()
    )
    assert expected <= roots, f"{braze_key.to_user_string()} does not trace back to {expected - roots}"
    for path in paths:
        between = path[1:-1]
        text = " -> ".join(k.to_user_string() for k in path)
        for key in between:
            node = graph.get(key)
            assert key in defined, f"{key.to_user_string()} on {text} is not defined by any folder"
            if not node.is_materializable:
                continue  # an external system in the middle (e.g. the Pub/Sub topic) has no table
            schema = _schema(node)
            assert isinstance(schema, TableSchema) and schema.columns, (
                f"{key.to_user_string()} on {text} has no dagster/column_schema in its definition metadata"
            )
    assert WORKSPACE in graph.get(braze_key).child_keys


def test_braze_column_lineage_names_real_upstream_columns(graph_and_defined):
    graph, _ = graph_and_defined
    for key in LINEAGE:
        node = graph.get(key)
        lineage = _raw(node.metadata["dagster/column_lineage"])
        assert isinstance(lineage, TableColumnLineage)
        own = {c.name for c in _schema(node).columns}
        assert set(lineage.deps_by_column) == own, f"{key.to_user_string()}: lineage must cover every column"
        for column, deps in lineage.deps_by_column.items():
            for dep in deps:
                assert dep.asset_key in graph.get(key).parent_keys, (
                    f"{column} <- {dep.asset_key} is not a dep"
                )
                upstream = _schema(graph.get(dep.asset_key))
                names = {c.name for c in upstream.columns} if upstream else set()
                assert dep.column_name in names, (
                    f"{key.to_user_string()}.{column} <- {dep.asset_key.to_user_string()}.{dep.column_name}: "
                    f"no such column (upstream has {sorted(names)})"
                )
