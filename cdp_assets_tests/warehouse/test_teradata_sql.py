"""Teradata at the SQL level: no Vantage server can run here, so ``teradatasql.connect`` is replaced by a fake
DB-API connection that records every call. The tests assert exactly what reaches the driver (statements, bind
values, batch sizes, commits and rollbacks), parse every statement with sqlglot's Teradata dialect, and drive
the error paths. What this cannot prove is listed in this folder's README.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pandas as pd
import pytest
import sqlglot
import teradatasql

from cdp_assets.shared.warehouse import (
    IdentifierError,
    SchemaChangeError,
    Slice,
    TableRef,
    WarehouseError,
    WriteMode,
    WritePlan,
)
from cdp_assets.shared.warehouse.teradata import TeradataWarehouse

T = TableRef("seg", "t")
TARGET = '"cdp"."seg__t"'
STAGE = '"cdp"."_cdp_stage_X"'
COLUMNS_QUERY = (
    "SELECT ColumnName, ColumnType, Nullable FROM DBC.ColumnsV WHERE DatabaseName = ? AND TableName = ? "
    "ORDER BY ColumnId"
)
UTC = dt.timezone.utc


class FakeCursor:
    def __init__(self, conn: FakeConnection):
        self.conn, self._rows = conn, []

    @property
    def description(self):
        return [("c",)]

    def execute(self, sql: str, params: Any = None) -> None:
        self.conn.record("execute", sql, params)
        self._rows = self.conn.respond(sql, params)

    def executemany(self, sql: str, rows: list) -> None:
        self.conn.record("executemany", sql, rows)
        if self.conn.fail_executemany is not None and len(self.conn.batches()) == self.conn.fail_executemany[0]:
            raise self.conn.fail_executemany[1]

    def fetchall(self):
        return self._rows

    def fetchone(self):
        return self._rows[0] if self._rows else None


class FakeConnection:
    """Records calls; answers the catalog query from ``tables`` and FastLoad error queries from ``fastload_errors``."""

    def __init__(self, tables: dict[str, list[tuple]] | None = None):
        self.calls: list[tuple] = []
        self.tables = tables or {}
        self.count = 0
        self.fastload_errors: list[str] = []
        self.fail_executemany: tuple[int, Exception] | None = None
        self.fail_on: tuple[str, Exception] | None = None
        self.autocommit = True

    def record(self, kind: str, sql: str | None = None, params: Any = None) -> None:
        self.calls.append((kind, _stable(sql) if sql else None, params))

    def respond(self, sql: str, params: Any) -> list:
        if self.fail_on and sql.startswith(self.fail_on[0]):
            raise self.fail_on[1]
        if sql.startswith("SELECT ColumnName"):
            return list(self.tables.get(params[1], []))
        if sql.startswith("SELECT COUNT(*)"):
            return [(self.count,)]
        if "teradata_get_errors" in sql:
            return [(e,) for e in self.fastload_errors]
        return []

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        self.record("commit")

    def rollback(self) -> None:
        self.record("rollback")

    def close(self) -> None:
        self.record("close")

    # views on the recording
    def statements(self) -> list[str]:
        return [sql for kind, sql, _ in self.calls if kind == "execute"]

    def batches(self) -> list[list]:
        return [rows for kind, _, rows in self.calls if kind == "executemany"]

    def kinds(self) -> list[str]:
        return [kind if kind != "execute" else sql.split(" (")[0] for kind, sql, _ in self.calls]


def _stable(sql: str) -> str:
    return re.sub(r"_cdp_stage_[0-9a-f]{32}", "_cdp_stage_X", sql)


@pytest.fixture
def driver(monkeypatch: pytest.MonkeyPatch):
    """The fake connection, and the kwargs ``teradatasql.connect`` was called with."""
    conn = FakeConnection()
    seen: list[dict] = []

    def connect(**kwargs):
        seen.append(kwargs)
        return conn

    monkeypatch.setattr(teradatasql, "connect", connect)
    conn.connect_kwargs = seen  # type: ignore[attr-defined]
    return conn


def warehouse(**overrides) -> TeradataWarehouse:
    return TeradataWarehouse(host="vantage.example", user="cdp", password="pw-never-shown", database="cdp", **overrides)


def frame(n: int = 2) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": list(range(1, n + 1)),
            "user": [f"u{i}" for i in range(n)],
            "timestamp": pd.to_datetime(["2024-01-05T10:00:00Z"] * n, utc=True),
            "day": [dt.date(2024, 1, 5)] * n,
            "props": [{"k": i} for i in range(n)],
            "ok": [True] * n,
        }
    )


EXISTING = [
    ("id", "I8", "Y"), ("user", "CV", "Y"), ("timestamp", "SZ", "Y"), ("day", "DA", "Y"), ("props", "JN", "Y"),
    ("ok", "I1", "Y"),
]

CREATE_TARGET = (
    f'CREATE MULTISET TABLE {TARGET} ("id" BIGINT, "user" VARCHAR(4000) CHARACTER SET UNICODE, '
    '"timestamp" TIMESTAMP(6) WITH TIME ZONE, "day" DATE, "props" JSON(32000) CHARACTER SET UNICODE, "ok" BYTEINT) '
)
CREATE_STAGE = (
    f'CREATE MULTISET TABLE {STAGE} ("c0" BIGINT, "c1" VARCHAR(4000) CHARACTER SET UNICODE, '
    '"c2" TIMESTAMP(6) WITH TIME ZONE, "c3" DATE, "c4" VARCHAR(32000) CHARACTER SET UNICODE, "c5" BYTEINT) '
    "NO PRIMARY INDEX"
)
INSERT_STAGE = f'INSERT INTO {STAGE} ("c0", "c1", "c2", "c3", "c4", "c5") VALUES (?, ?, ?, ?, ?, ?)'
SELECT_STAGE = '"c0", "c1", "c2", "c3", "c4", "c5"'
NAMES = '"id", "user", "timestamp", "day", "props", "ok"'


def test_connects_with_string_parameters_ansi_mode_and_autocommit_off(driver: FakeConnection):
    wh = warehouse()
    with wh.connection() as conn:
        assert conn is driver
    (kwargs,) = driver.connect_kwargs
    assert kwargs == {
        "host": "vantage.example", "user": "cdp", "password": "pw-never-shown", "database": "cdp",
        "dbs_port": "1025", "logmech": "TD2", "encryptdata": "true", "tmode": "ANSI", "connect_timeout": "10000",
    }
    assert all(isinstance(v, str) for v in kwargs.values()) and "port" not in kwargs
    assert driver.autocommit is False and driver.calls[-1][0] == "close"


def test_first_merge_creates_a_multiset_table_with_a_primary_index_then_merges(driver: FakeConnection):
    warehouse().write(frame(), WritePlan(T, WriteMode.MERGE, ("id",)))
    assert driver.kinds() == [
        COLUMNS_QUERY, "commit",
        f"CREATE MULTISET TABLE {TARGET}", "commit",          # DDL, then only COMMIT (Error 3722)
        f"CREATE MULTISET TABLE {STAGE}", "commit",
        "executemany", "commit",
        f"MERGE INTO {TARGET} AS t USING", "commit",          # the data change: one transaction
        f"DROP TABLE {STAGE}", "commit",
        "SELECT COUNT(*) FROM \"cdp\".\"seg__t\"",
        COLUMNS_QUERY, "commit",
        "close",
    ]
    statements = driver.statements()
    assert driver.calls[0][2] == ["cdp", "seg__t"]
    assert statements[1] == CREATE_TARGET + 'PRIMARY INDEX ("id")'
    assert statements[2] == CREATE_STAGE
    assert statements[3] == (
        f"MERGE INTO {TARGET} AS t USING (SELECT "
        '"c0" AS "id", "c1" AS "user", "c2" AS "timestamp", "c3" AS "day", '
        '"c4" AS "props", "c5" AS "ok" '
        f'FROM {STAGE}) AS s ON t."id" = s."id" '
        'WHEN MATCHED THEN UPDATE SET "user" = s."user", "timestamp" = s."timestamp", "day" = s."day", '
        '"props" = s."props", "ok" = s."ok" '
        f'WHEN NOT MATCHED THEN INSERT ({NAMES}) VALUES (s."id", s."user", s."timestamp", s."day", s."props", s."ok")'
    )


def test_bind_values_are_typed_for_the_driver(driver: FakeConnection):
    df = frame(2)
    df.loc[1, "user"] = None
    df["score"] = [1.5, float("nan")]
    warehouse().write(df, WritePlan(T))
    (rows,) = driver.batches()
    assert rows[0] == [1, "u0", dt.datetime(2024, 1, 5, 10, tzinfo=UTC), dt.date(2024, 1, 5), '{"k":0}', 1, 1.5]
    assert rows[1] == [2, None, dt.datetime(2024, 1, 5, 10, tzinfo=UTC), dt.date(2024, 1, 5), '{"k":1}', 1, None]
    assert rows[0][2].tzinfo is not None  # tz-aware: bound as TIMESTAMP WITH TIME ZONE (C.3)
    assert type(rows[0][0]) is int and type(rows[0][5]) is int


def test_no_primary_key_means_no_primary_index(driver: FakeConnection):
    warehouse().write(frame(), WritePlan(T, WriteMode.APPEND))
    assert driver.statements()[1] == CREATE_TARGET + "NO PRIMARY INDEX"
    assert f"INSERT INTO {TARGET} ({NAMES}) SELECT {SELECT_STAGE} FROM {STAGE}" in driver.statements()


def test_replace_deletes_and_inserts_in_one_transaction(driver: FakeConnection):
    driver.tables["seg__t"] = EXISTING
    warehouse().write(frame(), WritePlan(T))
    data = driver.kinds()[driver.kinds().index("executemany") + 2 :]
    assert data[:4] == [f"DELETE FROM {TARGET}", f"INSERT INTO {TARGET}", "commit", f"DROP TABLE {STAGE}"]
    assert f"DELETE FROM {TARGET}" in driver.statements()


def test_partition_overwrite_deletes_a_half_open_range(driver: FakeConnection):
    driver.tables["seg__t"] = EXISTING
    s = Slice("day", dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 2, 1, tzinfo=UTC))
    warehouse().write(frame(), WritePlan(T, WriteMode.PARTITION, slice=s))
    delete = next(c for c in driver.calls if c[1] and c[1].startswith("DELETE"))
    assert delete[1] == f'DELETE FROM {TARGET} WHERE "day" >= ? AND "day" < ?'
    assert delete[2] == [dt.date(2024, 1, 1), dt.date(2024, 2, 1)]  # coerced to the DATE column


def test_new_columns_are_added_one_ddl_per_commit(driver: FakeConnection):
    driver.tables["seg__t"] = EXISTING
    warehouse().write(frame().assign(country="DE", visits=3), WritePlan(T, WriteMode.APPEND))
    kinds = driver.kinds()
    start = kinds.index(f'ALTER TABLE {TARGET} ADD "country" VARCHAR(4000) CHARACTER SET UNICODE')
    assert kinds[start : start + 4] == [
        f'ALTER TABLE {TARGET} ADD "country" VARCHAR(4000) CHARACTER SET UNICODE', "commit",
        f'ALTER TABLE {TARGET} ADD "visits" BIGINT', "commit",
    ]


def test_type_change_fails_before_any_ddl(driver: FakeConnection):
    driver.tables["seg__t"] = EXISTING
    with pytest.raises(SchemaChangeError, match=r'"cdp"."seg__t".id: the table has bigint, the new data has string'):
        warehouse().write(frame().assign(id=["a", "b"]), WritePlan(T, WriteMode.APPEND))
    assert not any(s.startswith(("CREATE", "ALTER", "DELETE", "INSERT", "MERGE")) for s in driver.statements())


def test_empty_frame_sends_no_dml(driver: FakeConnection):
    driver.tables["seg__t"] = EXISTING
    driver.count = 7
    result = warehouse().write(frame(0), WritePlan(T, WriteMode.MERGE, ("id",)))
    assert result.row_count == 7 and result.skipped_reason
    assert [s.split(" ")[0] for s in driver.statements()] == ["SELECT", "SELECT"]


def test_executemany_batches_by_batch_size(driver: FakeConnection):
    warehouse(batch_size=2).write(frame(5), WritePlan(T, WriteMode.APPEND))
    assert [len(b) for b in driver.batches()] == [2, 2, 1]
    assert [r[0] for b in driver.batches() for r in b] == [1, 2, 3, 4, 5]
    assert {sql for kind, sql, _ in driver.calls if kind == "executemany"} == {INSERT_STAGE}


def test_large_frames_use_fastload_into_the_empty_staging_table(driver: FakeConnection):
    warehouse(fastload_threshold=4, fastload_batch_size=3).write(frame(5), WritePlan(T, WriteMode.APPEND))
    assert not driver.batches()
    fastload = "{fn teradata_try_fastload}" + INSERT_STAGE
    loads = [(sql, rows) for kind, sql, rows in driver.calls if kind == "execute" and sql == fastload]
    assert [len(rows) for _, rows in loads] == [3, 2]
    assert [r[0] for _, rows in loads for r in rows] == [1, 2, 3, 4, 5]
    head = lambda sql: sql.split(" (")[0]  # noqa: E731
    kinds = driver.kinds()
    first = kinds.index(head(fastload))
    warn = head("{fn teradata_nativesql}{fn teradata_get_warnings}" + INSERT_STAGE)
    err = head("{fn teradata_nativesql}{fn teradata_get_errors}" + INSERT_STAGE)
    # after each batch: warnings + errors (error table 1); after the commit: again (error table 2)
    assert kinds[first : first + 10] == [
        head(fastload), warn, err,
        head(fastload), warn, err,
        "commit", warn, err,
        f"INSERT INTO {TARGET}",
    ]


def test_fastload_errors_abort_the_write_before_the_target_is_touched(driver: FakeConnection):
    driver.tables["seg__t"] = EXISTING
    driver.fastload_errors = ["[Error 2679] row 2: The format or data contains a bad character"]
    with pytest.raises(WarehouseError, match=r"FastLoad .* reported 2 error\(s\)[\s\S]*Error 2679"):
        warehouse(fastload_threshold=2).write(frame(3), WritePlan(T))
    statements = driver.statements()
    assert not any(s.startswith(("DELETE", f"INSERT INTO {TARGET}", "MERGE")) for s in statements)
    assert "rollback" in driver.kinds() and f"DROP TABLE {STAGE}" in statements


def test_a_failing_batch_reports_the_failing_rows(driver: FakeConnection):
    driver.tables["seg__t"] = EXISTING
    error = teradatasql.OperationalError(
        "[Version 20.0.0.72] [Session 42] [Teradata Database] [Error 2673] The source parcel length does not match "
        "data that was defined.\nBatched statement 2 failed to execute"
    )
    driver.fail_executemany = (2, error)  # the second batch
    with pytest.raises(WarehouseError) as err:
        warehouse(batch_size=2).write(frame(5), WritePlan(T))
    message = str(err.value)
    assert "Error 2673" in message and "frame positions [3]" in message and "u3" in message
    assert "pw-never-shown" not in message
    assert "rollback" in driver.kinds() and not any(s.startswith("DELETE") for s in driver.statements())


def test_a_failing_data_statement_rolls_back(driver: FakeConnection):
    driver.tables["seg__t"] = EXISTING
    driver.fail_on = ("INSERT INTO \"cdp\".\"seg__t\"", teradatasql.OperationalError("[Error 2801] Duplicate unique prime key"))
    with pytest.raises(teradatasql.OperationalError, match="2801"):
        warehouse().write(frame(), WritePlan(T))
    kinds = driver.kinds()
    delete = kinds.index(f"DELETE FROM {TARGET}")
    assert kinds[delete + 1 : delete + 3] == [f"INSERT INTO {TARGET}", "rollback"]
    assert "commit" not in kinds[delete:kinds.index(f"DROP TABLE {STAGE}")]


@pytest.mark.parametrize("mode", list(WriteMode))
def test_every_statement_parses_as_teradata_sql(driver: FakeConnection, mode: WriteMode):
    driver.tables["seg__t"] = EXISTING
    plan = WritePlan(
        T, mode, ("id",) if mode is WriteMode.MERGE else (),
        Slice("day", dt.date(2024, 1, 1), dt.date(2024, 2, 1)) if mode is WriteMode.PARTITION else None,
    )
    warehouse(fastload_threshold=2).write(frame(3).assign(extra=1.0), plan)
    sent = [re.sub(r"^(\{fn [a-z_]+\})+", "", s) for s in driver.statements()] + [INSERT_STAGE]
    for sql in sent:
        parsed = sqlglot.parse_one(sql, read="teradata")
        # a real parse, not sqlglot's opaque fallback for statements it does not understand
        assert parsed is not None and not isinstance(parsed, sqlglot.exp.Command), sql
    assert any(s.startswith(("MERGE", "DELETE", "INSERT INTO \"cdp\".\"seg__t\"")) for s in sent)


def test_reserved_words_and_quotes_are_quoted_and_long_names_refused(driver: FakeConnection):
    wh = warehouse()
    df = pd.DataFrame({"user": ["a"], "timestamp": ["b"], 'say "hi"': ["c"], "id": [1]})
    wh.write(df, WritePlan(T))
    assert driver.statements()[1].startswith(
        f'CREATE MULTISET TABLE {TARGET} ("user" VARCHAR(4000) CHARACTER SET UNICODE, "timestamp" VARCHAR(4000) '
        'CHARACTER SET UNICODE, "say ""hi""" VARCHAR'
    )
    with pytest.raises(IdentifierError, match=r"129 characters; this warehouse allows 128"):
        wh.write(pd.DataFrame({"x" * 129: [1]}), WritePlan(T))
    with pytest.raises(IdentifierError, match=r"Teradata allows 128"):
        wh.write(df, WritePlan(TableRef("seg", "y" * 125)))


def test_unreachable_host_fails_fast_naming_the_settings_without_the_password():
    wh = TeradataWarehouse(host="127.0.0.1", user="cdp", password="pw-never-shown", database="cdp", dbs_port=1,
                           connect_timeout_ms=2000)
    with pytest.raises(WarehouseError) as err:
        wh.row_count(T)
    message = str(err.value)
    assert "TERADATA_HOST" in message and "TERADATA_DBS_PORT" in message and "127.0.0.1:1" in message
    assert "pw-never-shown" not in message
