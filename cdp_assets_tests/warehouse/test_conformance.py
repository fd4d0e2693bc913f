"""The warehouse conformance suite: every backend must give the same write semantics.

Runs on DuckDB, Snowflake (fakesnow) and BigQuery (bqemulator). Teradata has no server here; its SQL-level
tests are in ``test_teradata_sql.py``.
"""


import datetime as dt
import decimal
import json
import math

import numpy as np
import pandas as pd
import pytest
from dagster import (
    AssetExecutionContext,
    AssetIn,
    MonthlyPartitionsDefinition,
    asset,
    materialize,
)

from cdp_assets.shared.warehouse import (
    Column,
    IdentifierError,
    LogicalType,
    SchemaChangeError,
    Slice,
    TableRef,
    WarehouseError,
    WarehouseIOManager,
    WriteMode,
    WritePlan,
    table_metadata,
)

from .conftest import Backend

UTC = dt.timezone.utc


def _norm(v):
    """One value as plain Python, whichever backend returned it."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, pd.Timestamp):
        v = v.to_pydatetime()
    if isinstance(v, dt.datetime):
        return v.astimezone(UTC)
    return v


def rows(b: Backend, table: TableRef, columns: list[str], slice: Slice | None = None) -> list[tuple]:
    frame = b.wh.read(table, columns=columns, slice=slice)
    return sorted(tuple(_norm(v) for v in rec) for rec in frame[columns].itertuples(index=False, name=None))


def events(ids, day: dt.date, label: str = "v") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": list(ids),
            "day": [day] * len(ids),
            "label": [f"{label}{i}" for i in ids],
            "amount": [float(i) * 1.5 for i in ids],
        }
    )


def jan_slice() -> Slice:
    return Slice("day", dt.date(2024, 1, 1), dt.date(2024, 2, 1))


def feb_slice() -> Slice:
    return Slice("day", dt.date(2024, 2, 1), dt.date(2024, 3, 1))


# ---------------------------------------------------------------------------------------------- write modes


def test_replace_makes_the_table_exactly_the_frame(backend: Backend):
    t = backend.table()
    backend.wh.write(events([1, 2, 3], dt.date(2024, 1, 5)), WritePlan(t))
    result = backend.wh.write(events([7, 8], dt.date(2024, 2, 5), "new"), WritePlan(t))
    assert result.row_count == 2 and result.rows_in_frame == 2
    assert rows(backend, t, ["id", "label"]) == [(7, "new7"), (8, "new8")]
    assert backend.wh.row_count(t) == 2


def test_replace_with_types_round_trip(backend: Backend):
    t = backend.table()
    ts = pd.Timestamp("2024-03-01T12:34:56.123456Z")
    frame = pd.DataFrame(
        {
            "id": [1, 2],
            "flag": [True, False],
            "ts": [ts, pd.NaT],
            "day": [dt.date(2024, 3, 1), None],
            "payload": [{"a": 1, "b": [1, 2]}, None],
            "text": ["ünïcödé ✓", None],
        }
    )
    result = backend.wh.write(frame, WritePlan(t))
    types = {c.name: c.type.value for c in result.columns}
    assert types == {"id": "bigint", "flag": "boolean", "ts": "timestamp", "day": "date", "payload": "json", "text": "string"}
    got = rows(backend, t, ["id", "flag", "ts", "day", "text"])
    assert got == [(1, True, ts.to_pydatetime(), dt.date(2024, 3, 1), "ünïcödé ✓"), (2, False, None, None, None)]
    payload = backend.wh.read(t, columns=["id", "payload"]).sort_values("id")["payload"].tolist()
    assert json.loads(payload[0]) == {"a": 1, "b": [1, 2]} and _norm(payload[1]) is None


def test_partition_overwrite_leaves_other_months_untouched(backend: Backend):
    t = backend.table()
    plan = lambda s: WritePlan(t, WriteMode.PARTITION, slice=s)  # noqa: E731
    backend.wh.write(events([1, 2], dt.date(2024, 1, 10)), plan(jan_slice()))
    backend.wh.write(events([3, 4], dt.date(2024, 2, 10)), plan(feb_slice()))
    result = backend.wh.write(events([5], dt.date(2024, 1, 31), "re"), plan(jan_slice()))

    assert result.row_count == 3
    assert rows(backend, t, ["id", "day", "label"]) == [
        (3, dt.date(2024, 2, 10), "v3"),
        (4, dt.date(2024, 2, 10), "v4"),
        (5, dt.date(2024, 1, 31), "re5"),
    ]
    assert rows(backend, t, ["id"], slice=feb_slice()) == [(3,), (4,)]


def test_partition_refuses_rows_outside_the_slice(backend: Backend):
    t = backend.table()
    backend.wh.write(events([1], dt.date(2024, 1, 10)), WritePlan(t, WriteMode.PARTITION, slice=jan_slice()))
    stray = pd.concat([events([2], dt.date(2024, 1, 11)), events([3], dt.date(2024, 2, 1))])
    with pytest.raises(WarehouseError, match=r"outside the partition"):
        backend.wh.write(stray, WritePlan(t, WriteMode.PARTITION, slice=jan_slice()))
    assert rows(backend, t, ["id"]) == [(1,)]


def test_merge_updates_inserts_and_keeps_keys_unique(backend: Backend):
    t = backend.table()
    plan = WritePlan(t, WriteMode.MERGE, ("id",))
    backend.wh.write(events([1, 2, 3], dt.date(2024, 1, 1), "old"), plan)
    update = pd.DataFrame(
        {
            "id": [2, 3, 4, 4],  # 4 twice: the last row of the frame wins
            "day": [dt.date(2024, 1, 2)] * 4,
            "label": ["new2", "new3", "first4", "last4"],
            "amount": [20.0, 30.0, 40.0, 41.0],
        }
    )
    result = backend.wh.write(update, plan)
    assert result.rows_in_frame == 3 and result.row_count == 4
    assert rows(backend, t, ["id", "label", "amount"]) == [
        (1, "old1", 1.5),
        (2, "new2", 20.0),
        (3, "new3", 30.0),
        (4, "last4", 41.0),
    ]


def test_merge_on_a_composite_key(backend: Backend):
    t = backend.table()
    plan = WritePlan(t, WriteMode.MERGE, ("id", "day"))
    backend.wh.write(events([1, 2], dt.date(2024, 1, 1), "a"), plan)
    backend.wh.write(events([1, 2], dt.date(2024, 1, 2), "b"), plan)
    backend.wh.write(events([1], dt.date(2024, 1, 1), "c"), plan)
    assert rows(backend, t, ["id", "day", "label"]) == [
        (1, dt.date(2024, 1, 1), "c1"),
        (1, dt.date(2024, 1, 2), "b1"),
        (2, dt.date(2024, 1, 1), "a2"),
        (2, dt.date(2024, 1, 2), "b2"),
    ]


def test_append_adds_every_row(backend: Backend):
    t = backend.table()
    plan = WritePlan(t, WriteMode.APPEND)
    backend.wh.write(events([1, 2], dt.date(2024, 1, 1)), plan)
    result = backend.wh.write(events([2, 3], dt.date(2024, 1, 2)), plan)
    assert result.row_count == 4
    assert rows(backend, t, ["id"]) == [(1,), (2,), (2,), (3,)]


# ---------------------------------------------------------------------------------------------- schema


def test_new_column_is_added(backend: Backend):
    t = backend.table()
    backend.wh.write(events([1], dt.date(2024, 1, 1)), WritePlan(t, WriteMode.APPEND))
    result = backend.wh.write(events([2], dt.date(2024, 1, 2)).assign(country="DE"), WritePlan(t, WriteMode.APPEND))
    assert result.added_columns == ["country"]
    assert [c.name for c in backend.wh.columns(t)] == ["id", "day", "label", "amount", "country"]
    assert rows(backend, t, ["id", "country"]) == [(1, None), (2, "DE")]


def test_declared_types_decide_columns_the_values_cannot(backend: Backend):
    """A first batch whose JSON / timestamp / integer columns are all NULL still makes those columns' types,
    through the I/O manager from the definition's column schema, so later batches with values fit."""
    declared = [Column("id", LogicalType.BIGINT), Column("attrs", LogicalType.JSON),
                Column("seen_at", LogicalType.TIMESTAMP), Column("visits", LogicalType.BIGINT)]

    @asset(key_prefix=[backend.schema], metadata=table_metadata("merge", ["id"], columns=declared))
    def people() -> pd.DataFrame:
        return pd.DataFrame({"id": [1], "attrs": [None], "seen_at": [None], "visits": [None]})

    assert materialize([people], resources={"io_manager": WarehouseIOManager(warehouse=backend.wh)}).success
    table = TableRef(backend.schema, "people")
    assert [(c.name, c.type) for c in backend.wh.columns(table)] == [(c.name, c.type) for c in declared]
    later = pd.DataFrame({"id": [2], "attrs": [{"plan": "pro"}], "seen_at": [dt.datetime(2024, 1, 2, tzinfo=UTC)],
                          "visits": [3]})
    backend.wh.write(later, WritePlan(table, WriteMode.MERGE, ("id",)))
    got = rows(backend, table, ["id", "visits"])
    assert got == [(1, None), (2, 3)]
    stored = backend.wh.read(table, columns=["id", "attrs"]).set_index("id")["attrs"]
    assert json.loads(stored[2]) == {"plan": "pro"}



def test_typed_arrow_frame_with_encoded_json_is_written_as_declared(backend: Backend):
    """The loaders' fast path: Arrow-backed columns already in their declared types, JSON text the caller
    encoded (``WritePlan.encoded_json``), taken as they are; values, NULLs and types land exactly."""
    import pyarrow as pa

    table = TableRef(backend.schema, "typed_events")
    utc_us = pa.timestamp("us", tz="UTC")
    frame = pa.table({
        "message_id": pa.array(["m1", "m2", "m3"], pa.string()),
        "sent_at": pa.array([dt.datetime(2026, 11, 1, 10, 0, 0, 500000, tzinfo=UTC), None,
                             dt.datetime(2026, 11, 2, tzinfo=UTC)], utc_us),
        "properties": pa.array(['{"price":1.5,"tags":["a"]}', "{}", None], pa.string()),
        "event": pa.array(["Viewed", None, "Bought"], pa.string()),
    }).to_pandas(types_mapper=pd.ArrowDtype)
    types = {"message_id": LogicalType.STRING, "sent_at": LogicalType.TIMESTAMP, "properties": LogicalType.JSON,
             "event": LogicalType.STRING}
    plan = WritePlan(table, WriteMode.MERGE, ("message_id",), column_types=types,
                     encoded_json=frozenset({"properties"}))
    result = backend.wh.write(frame, plan)
    assert result.row_count == 3
    assert [(c.name, c.type) for c in backend.wh.columns(table)] == list(types.items())
    assert rows(backend, table, ["message_id", "sent_at", "event"]) == [
        ("m1", dt.datetime(2026, 11, 1, 10, 0, 0, 500000, tzinfo=UTC), "Viewed"), ("m2", None, None),
        ("m3", dt.datetime(2026, 11, 2, tzinfo=UTC), "Bought")]
    stored = backend.wh.read(table, columns=["message_id", "properties"]).set_index("message_id")["properties"]
    assert json.loads(stored["m1"]) == {"price": 1.5, "tags": ["a"]} and json.loads(stored["m2"]) == {}
    assert stored["m3"] is None or pd.isna(stored["m3"])
    # a redelivery of the same keys merges onto them (exactly-once in the table)
    backend.wh.write(frame.iloc[:2], plan)
    assert backend.wh.row_count(table) == 3

def test_type_change_is_refused_with_a_clear_error(backend: Backend):
    t = backend.table()
    backend.wh.write(events([1], dt.date(2024, 1, 1)), WritePlan(t))
    changed = events([2], dt.date(2024, 1, 2)).assign(amount=["a lot"])
    with pytest.raises(SchemaChangeError) as err:
        backend.wh.write(changed, WritePlan(t, WriteMode.APPEND))
    assert (err.value.column, err.value.old.value, err.value.new.value) == ("amount", "double", "string")
    message = str(err.value)
    assert backend.wh.fqn(t) in message and "amount" in message and "double" in message and "string" in message
    assert rows(backend, t, ["id", "amount"]) == [(1, 1.5)]


def test_widening_int_into_a_double_column_is_accepted(backend: Backend):
    t = backend.table()
    backend.wh.write(events([1], dt.date(2024, 1, 1)), WritePlan(t))
    backend.wh.write(events([2], dt.date(2024, 1, 1)).assign(amount=[7]), WritePlan(t, WriteMode.APPEND))
    assert rows(backend, t, ["id", "amount"]) == [(1, 1.5), (2, 7.0)]


# ---------------------------------------------------------------------------------------------- atomicity


@pytest.mark.parametrize("mode", [WriteMode.REPLACE, WriteMode.PARTITION, WriteMode.MERGE])
def test_failure_mid_write_leaves_the_previous_data(backend: Backend, mode):
    t = backend.table()
    plan = WritePlan(t, mode, ("id",) if mode is WriteMode.MERGE else (), jan_slice() if mode is WriteMode.PARTITION else None)
    backend.wh.write(events([1, 2], dt.date(2024, 1, 10)), plan)

    cls = type(backend.wh)
    original = cls.data_statements
    broken = backend.wh.fqn(TableRef(backend.schema, "no_such_table"))
    ran: list[str] = []

    def failing_after_first(self, *args, **kwargs):
        statements = original(self, *args, **kwargs)
        ran.extend(sql for sql, _ in statements)
        # The first statement (the DELETE, or the whole MERGE) runs, then the transaction fails.
        return [statements[0], (f"SELECT * FROM {broken}", []), *statements[1:]]

    with pytest.MonkeyPatch.context() as patch, pytest.raises(Exception):
        patch.setattr(cls, "data_statements", failing_after_first)
        backend.wh.write(events([1, 3], dt.date(2024, 1, 20), "new"), plan)

    assert ran, "the injected failure was not reached"
    assert rows(backend, t, ["id", "label"]) == [(1, "v1"), (2, "v2")]
    # and the next write works normally (no transaction or lock left behind)
    backend.wh.write(events([9], dt.date(2024, 1, 11)), plan)
    assert (9,) in rows(backend, t, ["id"])


@pytest.mark.parametrize("mode", [WriteMode.PARTITION, WriteMode.MERGE, WriteMode.APPEND])
def test_empty_frame_keeps_the_data(backend: Backend, mode):
    t = backend.table()
    plan = WritePlan(t, mode, ("id",) if mode is WriteMode.MERGE else (), jan_slice() if mode is WriteMode.PARTITION else None)
    backend.wh.write(events([1, 2], dt.date(2024, 1, 10)), plan)
    result = backend.wh.write(events([], dt.date(2024, 1, 10)), plan)
    assert result.skipped_reason and result.row_count == 2
    assert rows(backend, t, ["id"]) == [(1,), (2,)]


def test_empty_frame_in_replace_mode_empties_the_table(backend: Backend):
    t = backend.table()
    backend.wh.write(events([1, 2], dt.date(2024, 1, 10)), WritePlan(t))
    assert backend.wh.write(events([], dt.date(2024, 1, 10)), WritePlan(t)).row_count == 0


# ---------------------------------------------------------------------------------------------- identifiers


HOSTILE = ["user", "timestamp", "group", "select", "naïve ünïcode", "Mixed Case", "with-dash", "x" * 120]


def test_hostile_identifiers_work(backend: Backend):
    t = backend.table("user")  # reserved word as table name too
    frame = pd.DataFrame({name: [f"{i}"] for i, name in enumerate(HOSTILE)}).assign(id=[1])
    backend.wh.write(frame, WritePlan(t, WriteMode.MERGE, ("id",)))
    backend.wh.write(frame.assign(user=["changed"]), WritePlan(t, WriteMode.MERGE, ("id",)))
    got = backend.wh.read(t)
    assert list(got.columns) == [*HOSTILE, "id"]
    assert got.loc[0, "user"] == "changed" and got.loc[0, "naïve ünïcode"] == "4"
    assert backend.wh.read(t, slice=Slice("group", values=("2",)))["timestamp"].tolist() == ["1"]


def test_quotes_in_names_work_or_fail_clearly(backend: Backend):
    t = backend.table()
    frame = pd.DataFrame({'say "hi"': ["a"], "it's": ["b"], "id": [1]})
    if backend.name == "snowflake":  # fakesnow pastes column names into its own metadata SQL (see README)
        frame = frame.drop(columns=["it's"])
    try:
        backend.wh.write(frame, WritePlan(t))
    except IdentifierError as exc:  # BigQuery's column names cannot hold '"'
        assert 'say "hi"' in str(exc)
        assert backend.wh.columns(t) is None
        return
    assert backend.wh.read(t).loc[0, 'say "hi"'] == "a"
    assert backend.name == "snowflake" or backend.wh.read(t).loc[0, "it's"] == "b"


@pytest.mark.parametrize(
    "columns, expected",
    [
        (["x" * 400], r"400 characters"),
        (["Email", "email"], r"differ only in case"),
        (["", "a"], r"empty column name"),
        (["a\x00b"], r"NUL"),
    ],
)
def test_impossible_names_fail_with_a_clear_error(backend: Backend, columns, expected):
    frame = pd.DataFrame([[1] * len(columns)], columns=columns)
    with pytest.raises(IdentifierError, match=expected):
        backend.wh.write(frame, WritePlan(backend.table()))


def test_values_are_bound_not_pasted(backend: Backend):
    t = backend.table()
    evil = "x'); DROP TABLE t; --"
    backend.wh.write(pd.DataFrame({"k": [evil, "ok"], "id": [1, 2]}), WritePlan(t))
    assert backend.wh.read(t, slice=Slice("k", values=(evil,)))["id"].map(_norm).tolist() == [1]


# ---------------------------------------------------------------------------------------------- I/O manager


def test_io_manager_records_metadata(backend: Backend):
    @asset(key_prefix=[backend.schema], metadata=table_metadata("merge", ["id"]))
    def contacts() -> pd.DataFrame:
        return pd.DataFrame({"id": [1, 2, 2], "user": ["a", "b", "c"], "seen": [dt.date(2024, 1, 1)] * 3})

    result = materialize([contacts], resources={"io_manager": WarehouseIOManager(warehouse=backend.wh)})
    assert result.success
    meta = result.asset_materializations_for_node(f"{backend.schema}__contacts")[0].metadata
    table = TableRef(backend.schema, "contacts")
    assert meta["dagster/row_count"].value == 2
    assert meta["dagster/table_name"].value == backend.wh.fqn(table)
    assert meta["cdp/write_mode"].value == "merge"
    schema = meta["dagster/column_schema"].schema
    assert [(c.name, c.type) for c in schema.columns] == [("id", "bigint"), ("user", "string"), ("seen", "date")]
    assert schema.columns[0].constraints.nullable is False  # the primary key
    assert rows(backend, table, ["id", "user"]) == [(1, "a"), (2, "c")]


def test_io_manager_writes_and_reads_single_partitions(backend: Backend):
    months = MonthlyPartitionsDefinition(start_date="2024-01-01", end_date="2024-04-01")

    @asset(key_prefix=[backend.schema], partitions_def=months, metadata=table_metadata("partition", partition_column="day"))
    def daily(context: AssetExecutionContext) -> pd.DataFrame:
        start = context.partition_time_window.start.date()
        return pd.DataFrame({"day": [start, start + dt.timedelta(days=1)], "n": [start.month, start.month * 10]})

    @asset(key_prefix=[backend.schema], partitions_def=months, ins={"daily": AssetIn(key=[backend.schema, "daily"])})
    def monthly_total(daily: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"total": [int(daily["n"].map(_norm).sum())], "rows": [len(daily)]})

    io = {"io_manager": WarehouseIOManager(warehouse=backend.wh)}
    for key in ("2024-01-01", "2024-02-01", "2024-01-01"):  # January twice: overwritten, not doubled
        assert materialize([daily], partition_key=key, resources=io).success
    result = materialize([daily, monthly_total], partition_key="2024-02-01", resources=io, selection=[monthly_total])
    assert result.success

    assert backend.wh.row_count(TableRef(backend.schema, "daily")) == 4
    assert rows(backend, TableRef(backend.schema, "monthly_total"), ["total", "rows"]) == [(22, 2)]
