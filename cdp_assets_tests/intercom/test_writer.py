"""The streaming batch writer's performance measures keep every guarantee: frames extracted from raw pages
(in DuckDB) hold exactly the records' values, bad values fail naming the column, the DuckDB hold commits
every batch and leaves the database's settings as they were, and the GC thresholds come back after a
paging."""

from __future__ import annotations

import gc

import duckdb
import orjson
import pandas as pd
import pytest

from cdp_assets.intercom.catalog import BY_NAME, Kind
from cdp_assets.intercom.simulator import Workspace
from cdp_assets.intercom.sync import BatchWriter, DuckDBHold, fewer_gc_passes
from cdp_assets.shared.warehouse import TableRef
from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse

from .conftest import small_config

CONTACTS = BY_NAME["contacts"]


def records(n: int = 300) -> list[dict]:
    ws = Workspace(small_config())
    return [orjson.loads(orjson.dumps(ws.contact(i, True))) for i in range(n)]


def expected(record: dict, col) -> object:
    """What a column must hold for a record, worked out here in Python from the decoded record."""
    value = record.get(col.path or col.name)
    if value is None:
        return None
    if col.kind is Kind.JSON:
        return value  # compared decoded: the text must parse back to the same value
    if col.kind is Kind.TS:
        return pd.Timestamp(int(value), unit="s", tz="UTC")
    if col.kind is Kind.STR and not isinstance(value, str):
        return orjson.dumps(value).decode()  # any other JSON value: its JSON text
    return value


def assert_frame_holds(frame: pd.DataFrame, recs: list[dict], collection=CONTACTS) -> None:
    assert list(frame.columns) == collection.column_names and len(frame) == len(recs)
    for col in collection.columns:
        got = [None if pd.isna(v) else v for v in frame[col.name].astype(object)]
        if col.kind is Kind.JSON:
            got = [None if v is None else orjson.loads(v) for v in got]
        assert got == [expected(r, col) for r in recs], col.name


def test_frames_from_raw_pages_hold_the_records_values_in_order():
    recs = records()
    recs[0]["custom_attributes"] = None
    recs[1]["tags"] = "plain text"  # a JSON column holding a string: its JSON text, quoted
    recs[2]["location"] = [1, {"b": [True, None]}]
    recs[3]["custom_attributes"] = {"nested": {"list": [1, "two", None]}, "emoji": "\u00e9\u2603",
                                    "q": "'\"/"}
    recs[4]["owner_id"] = 1001  # a number in a text column: its text
    recs[5]["owner_id"] = True
    recs[6]["browser"] = {"o": 1}
    recs[7]["updated_at"] = None
    recs[8]["unsubscribed_from_emails"] = None
    del recs[9]["email"]  # a missing field is NULL
    pages = [orjson.dumps({"type": "list", "data": recs[i: i + 150], "pages": {"next": None}})
             for i in range(0, 300, 150)]
    frame = CONTACTS.frame_from_pages(pages)
    assert_frame_holds(frame, recs)
    assert frame.loc[1, "tags"] == '"plain text"'
    assert frame.loc[4, "owner_id"] == "1001" and frame.loc[5, "owner_id"] == "true"
    assert all(isinstance(frame[c].dtype, pd.ArrowDtype) for c in frame.columns)
    pd.testing.assert_frame_equal(CONTACTS.frame(recs), frame)  # records encoded in Python: the same frame


def test_every_collection_extracts_its_simulated_records():
    ws = Workspace(small_config())
    conversation = orjson.loads(orjson.dumps(ws.conversation(0)))
    parts = [{**p, "conversation_id": conversation["id"]}
             for p in conversation["conversation_parts"]["conversation_parts"]]
    assert parts
    for collection, recs in ((BY_NAME["conversations"], [conversation]),
                             (BY_NAME["conversation_parts"], parts)):
        frame = collection.frame(recs)
        assert_frame_holds(frame, recs, collection)
    assert len(BY_NAME["tags"].frame([])) == 0 and list(BY_NAME["tags"].frame([]).columns) == ["id", "name"]


@pytest.mark.parametrize("field, value, column", [
    ("updated_at", 10**12, "updated_at"),  # year 33658: beyond what a timestamp column holds
    ("unsubscribed_from_emails", "perhaps", "unsubscribed_from_emails"),
    ("created_at", "yesterday", "created_at"),
])
def test_a_value_that_does_not_convert_fails_naming_its_column(field, value, column):
    recs = records(3)
    recs[1][field] = value
    with pytest.raises(ValueError, match=f"intercom contacts: column {column}"):
        CONTACTS.frame(recs)


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


def test_a_batch_that_fails_extraction_fails_the_writer_and_keeps_the_batches_before_it(tmp_path):
    wh = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    table = TableRef("intercom", "contacts")
    writer = BatchWriter(wh, CONTACTS, table, batch_size=100)
    recs = records()
    recs[150]["created_at"] = "not a time"  # in the second batch
    with pytest.raises(ValueError, match="intercom contacts: column created_at"):
        try:
            for i in range(0, len(recs), 50):
                writer.add(recs[i: i + 50])
            writer.flush()
        finally:
            writer.close()
    df = wh.read(table)
    assert sorted(df["id"]) == sorted(r["id"] for r in recs[:100])  # the first batch, whole; nothing after
