"""The streaming batch writer's performance measures keep every guarantee: JSON columns hold the same text
as before, the DuckDB hold commits every batch and leaves the database's settings as they were, and the GC
thresholds come back after a paging."""

from __future__ import annotations

import gc

import duckdb
import orjson
import pandas as pd
import pytest

from cdp_assets.intercom.catalog import BY_NAME
from cdp_assets.intercom.simulator import Workspace
from cdp_assets.intercom.sync import BatchWriter, DuckDBHold, fewer_gc_passes
from cdp_assets.shared.warehouse import TableRef, WriteMode, WritePlan
from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse
from cdp_assets.shared.warehouse.types import prepare_frame

from .conftest import small_config

CONTACTS = BY_NAME["contacts"]


def records(n: int = 300) -> list[dict]:
    ws = Workspace(small_config())
    return [orjson.loads(orjson.dumps(ws.contact(i, True))) for i in range(n)]


def test_json_columns_are_the_text_prepare_frame_made_from_the_objects():
    recs = records()
    recs[0]["custom_attributes"] = None
    recs[1]["tags"] = "plain text"  # a scalar is left to prepare_frame, as before
    recs[2]["location"] = [1, {"b": [True, None]}]
    new, _ = prepare_frame(CONTACTS.frame(recs), CONTACTS.column_types)
    cols = {c.name: [c.get(r) for r in recs] for c in CONTACTS.columns}  # the objects themselves, as before
    old, _ = prepare_frame(CONTACTS.frame_from_columns(cols), CONTACTS.column_types)
    pd.testing.assert_frame_equal(new, old)
    assert new.loc[1, "tags"] == '"plain text"' and new.loc[0, "custom_attributes"] is None


@pytest.mark.parametrize("max_seconds", [0.0, 60.0])  # a release after every batch, or one at the end
def test_batches_are_committed_and_duckdb_settings_restored(tmp_path, max_seconds):
    wh = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    table = TableRef("intercom", "contacts")
    keeper = duckdb.connect(wh.database)  # another connection of the process keeps the instance open
    before = keeper.execute("SELECT current_setting('memory_limit'), current_setting('threads'), "
                            "current_setting('checkpoint_threshold')").fetchone()
    writer = BatchWriter(wh, CONTACTS, table, batch_size=100)
    writer.hold.max_seconds = max_seconds
    recs = records()
    try:
        for i in range(0, len(recs), 50):
            writer.add(recs[i: i + 50])
        writer.add([{**recs[0], "name": "renamed"}])  # merged on id
        writer.flush()
    finally:
        writer.close()
    writer.close()  # idempotent
    assert writer.hold.conn is None and writer.hold.periods == (4 if max_seconds == 0 else 1)
    after = keeper.execute("SELECT current_setting('memory_limit'), current_setting('threads'), "
                           "current_setting('checkpoint_threshold')").fetchone()
    assert after[1:] == before[1:] and after[0].split()[-1] == before[0].split()[-1]
    keeper.close()
    df = wh.read(table)
    assert len(df) == len(recs) and df["id"].is_unique
    assert df.set_index("id").loc[recs[0]["id"], "name"] == "renamed"


def test_the_hold_is_a_no_op_for_other_warehouses():
    hold = DuckDBHold(object())  # type: ignore[arg-type]
    hold.before_write()
    hold.after_write()
    hold.release()
    assert not hold.enabled and hold.periods == 0


def test_gc_thresholds_are_restored_after_paging():
    saved = gc.get_threshold()
    with fewer_gc_passes():
        with fewer_gc_passes():
            assert gc.get_threshold()[0] > saved[0]
        assert gc.get_threshold()[0] > saved[0]
    assert gc.get_threshold() == saved


def test_text_columns_are_text_or_null_as_before():
    from cdp_assets.intercom.catalog import Kind, _typed

    assert list(_typed(["a", None, 3, True], Kind.STR)) == ["a", None, "3", "True"]
    assert list(_typed(["a", float("nan")], Kind.STR)) == ["a", "nan"]  # str(), as before the fast path
    assert list(_typed([None, None], Kind.STR)) == [None, None] and list(_typed([], Kind.STR)) == []


def test_arrow_frames_write_the_same_table_as_object_frames(tmp_path):
    recs = records()
    recs[0]["owner_id"] = 1001  # a number in a text column: pyarrow refuses it, the column falls back to str()
    recs[1]["updated_at"] = None
    recs[2]["unsubscribed_from_emails"] = None
    recs[3]["custom_attributes"] = {"nested": {"list": [1, "two", None]}, "emoji": "\u00e9\u2603"}
    cols = CONTACTS.new_columns()
    CONTACTS.extend_columns(cols, recs)
    arrow, objects = CONTACTS.frame_from_columns(cols, arrow=True), CONTACTS.frame_from_columns(cols)
    assert isinstance(arrow["email"].dtype, pd.ArrowDtype) and arrow["owner_id"].dtype == object
    tables = []
    for name, frame in (("arrow", arrow), ("objects", objects)):
        wh = DuckDBWarehouse(database=str(tmp_path / f"{name}.duckdb"))
        wh.write(frame, WritePlan(TableRef("intercom", "contacts"), WriteMode.MERGE, ("id",),
                                  column_types=CONTACTS.column_types))
        tables.append((wh.columns(TableRef("intercom", "contacts")), wh.read(TableRef("intercom", "contacts"))))
    assert tables[0][0] == tables[1][0]
    assert [(c.name, c.type.value) for c in tables[0][0]] == [(c.name, c.kind.logical_type.value) for c in CONTACTS.columns]
    pd.testing.assert_frame_equal(tables[0][1].sort_values("id", ignore_index=True),
                                  tables[1][1].sort_values("id", ignore_index=True))
    assert tables[0][1].set_index("id").loc[recs[0]["id"], "owner_id"] == "1001"


def test_out_of_range_timestamps_fail_as_before():
    from cdp_assets.intercom.catalog import Kind, _arrow_typed, _typed

    with pytest.raises(Exception) as arrow_error:
        _arrow_typed([10**12], Kind.TS)
    with pytest.raises(Exception) as object_error:
        _typed([10**12], Kind.TS)
    assert type(arrow_error.value) is type(object_error.value)


def test_two_writers_on_one_file_restore_the_settings_once_both_are_done(tmp_path):
    wh = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    keeper = duckdb.connect(wh.database)
    setting = "SELECT current_setting('threads'), current_setting('checkpoint_threshold')"
    before = keeper.execute(setting).fetchone()
    a, b = DuckDBHold(wh), DuckDBHold(wh)
    a.before_write()
    b.before_write()
    a.release()
    assert keeper.execute(setting).fetchone() != before  # b still holds: still capped
    b.release()
    assert keeper.execute(setting).fetchone() == before
    keeper.close()
