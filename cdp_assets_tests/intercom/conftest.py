"""Fixtures: a simulator per test on an ephemeral loopback port, a DuckDB file per test, and a runner that
materializes the Intercom assets into it with a persistent (per-test) ephemeral Dagster instance."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from cdp_assets.intercom.assets import ALL_ASSETS
from cdp_assets.intercom.resources import IntercomResource
from cdp_assets.intercom.simulator import SimulatorServer, Workspace, WorkspaceConfig
from cdp_assets.shared.warehouse import TableRef, WarehouseIOManager
from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse

TOKEN = "tok_SECRET_do_not_leak_42"


def small_config(**overrides: Any) -> WorkspaceConfig:
    base = dict(seed=11, contacts=600, companies=120, conversations=60, token=TOKEN)
    return WorkspaceConfig(**{**base, **overrides})


@dataclass
class Harness:
    server: SimulatorServer
    warehouse: DuckDBWarehouse
    instance: DagsterInstance
    resource_overrides: dict = field(default_factory=dict)

    @property
    def ws(self) -> Workspace:
        return self.server.workspace

    def run(self, run_config: dict | None = None, selection: Any = None):
        resources = {
            "warehouse": self.warehouse,
            "io_manager": WarehouseIOManager(warehouse=self.warehouse),
            "intercom": IntercomResource(base_url=self.server.url, access_token=TOKEN, backoff_base_seconds=0.01,
                                         scroll_busy_wait_seconds=0.05, **self.resource_overrides),
        }
        result = materialize(ALL_ASSETS, instance=self.instance, resources=resources, run_config=run_config or {},
                             selection=selection)
        assert result.success
        return result

    def table(self, name: str) -> pd.DataFrame:
        return self.warehouse.read(TableRef("intercom", name))


@pytest.fixture
def harness(tmp_path, request):
    cfg = getattr(request, "param", None) or small_config()
    server = SimulatorServer(Workspace(cfg)).start()
    instance = DagsterInstance.ephemeral()
    try:
        yield Harness(server, DuckDBWarehouse(database=str(tmp_path / "cdp.duckdb")), instance)
    finally:
        server.stop()
        instance.dispose()


def epoch(ts: Any) -> int | None:
    return None if pd.isna(ts) else int(pd.Timestamp(ts).timestamp())


def assert_contacts_equal_truth(df: pd.DataFrame, ws: Workspace) -> None:
    truth = ws.truth_contacts()
    assert df["id"].is_unique, "duplicated contacts"
    assert set(df["id"]) == set(truth), (set(truth) - set(df["id"]), set(df["id"]) - set(truth))
    mismatches = []
    for row in df.itertuples(index=False):
        t = truth[row.id]
        deleted = not pd.isna(row.deleted_at)
        got = {"deleted": deleted, "deleted_reason": row.deleted_reason if deleted else None}
        want = {"deleted": t["deleted"], "deleted_reason": t["deleted_reason"]}
        if not t["deleted"]:
            got.update(external_id=row.external_id, email=row.email, phone=row.phone, name=row.name, role=row.role,
                       custom_attributes=json.loads(row.custom_attributes), updated_at=epoch(row.updated_at),
                       created_at=epoch(row.created_at))
            want.update({k: t[k] for k in ("external_id", "email", "phone", "name", "role", "custom_attributes",
                                            "updated_at", "created_at")})
        if got != want:
            mismatches.append((row.id, got, want))
    assert not mismatches, mismatches[:3]


def assert_conversations_equal_truth(convs: pd.DataFrame, parts: pd.DataFrame, ws: Workspace) -> None:
    truth = ws.truth_conversations()
    assert convs["id"].is_unique
    assert set(convs["id"]) == set(truth)
    for row in convs.itertuples(index=False):
        t = truth[row.id]
        assert (not pd.isna(row.deleted_at)) == t["deleted"], row.id
        if not t["deleted"]:
            assert epoch(row.updated_at) == t["updated_at"], row.id
            assert bool(row.parts_truncated) == t["parts_truncated"], row.id
            assert row.parts_total == t["parts_total"], row.id
    assert not parts.duplicated(["conversation_id", "id"]).any()
    stored = parts.groupby("conversation_id")["id"].apply(set).to_dict()
    for cid, want in ws.truth_parts().items():
        have = stored.get(cid, set())
        if truth[cid]["parts_truncated"]:
            assert want <= have, cid  # the 500 most recent; older ones kept from earlier reads
        else:
            assert have == want, cid


def capture_logs() -> list[str]:
    """Records of every log line (any logger) during a test, for token-leak checks."""
    lines: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logging.getLogger().addHandler(Grab(level=logging.DEBUG))
    logging.getLogger().setLevel(logging.DEBUG)
    return lines
