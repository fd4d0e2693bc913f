"""Teradata Vantage through the ``teradatasql`` driver (no server can run here: see the tests' README).

How a write goes (contract notes C.1–C.9):

* the session is ANSI mode with autocommit off; every DDL statement is followed by its own ``commit()``
  (Error 3722: only COMMIT may follow DDL inside a transaction);
* tables are ``MULTISET`` with a ``PRIMARY INDEX`` on the asset's primary key (``NO PRIMARY INDEX`` when it has
  none), text as ``VARCHAR(n) CHARACTER SET UNICODE``, JSON as ``JSON(n) CHARACTER SET UNICODE`` (n within the
  non-LOB limit, so FastLoad stays possible), timestamps as ``TIMESTAMP(6) WITH TIME ZONE`` bound as tz-aware
  UTC datetimes, booleans as ``BYTEINT`` 0/1;
* the frame goes into an empty permanent NoPI staging table: batched ``executemany`` for ordinary frames,
  ``{fn teradata_try_fastload}`` from ``fastload_threshold`` rows on, reading FastLoad's error tables after
  every batch and after the commit; a failing batch is reported with the rows that failed;
* then one transaction applies it: ``DELETE`` + ``INSERT … SELECT`` (replace, partition) or ``MERGE`` on the
  primary index (merge), and ``commit()``; any error ``rollback()``s, so readers keep the previous rows.

Tables live in one database: asset key ``["segment", "sources"]`` becomes ``"<database>"."segment__sources"``
(at most 128 characters).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import re
import uuid
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import pandas as pd
from dagster import EnvVar, get_dagster_logger
from pydantic import Field

from .base import SqlWarehouse
from .types import Column, IdentifierError, LogicalType, TableRef, WarehouseError, WriteMode, WritePlan

_LOGICAL = {
    "I8": LogicalType.BIGINT,
    "I": LogicalType.BIGINT,
    "I2": LogicalType.BIGINT,
    "I1": LogicalType.BOOLEAN,  # BYTEINT: how this layer stores booleans
    "F": LogicalType.DOUBLE,
    "D": LogicalType.DOUBLE,
    "N": LogicalType.DOUBLE,
    "CV": LogicalType.STRING,
    "CF": LogicalType.STRING,
    "CO": LogicalType.STRING,
    "SZ": LogicalType.TIMESTAMP,
    "TS": LogicalType.TIMESTAMP,
    "DA": LogicalType.DATE,
    "JN": LogicalType.JSON,
}

ENV = {
    "host": "TERADATA_HOST",
    "user": "TERADATA_USER",
    "password": "TERADATA_PASSWORD",
    "database": "TERADATA_DATABASE",
    "logmech": "TERADATA_LOGMECH",
    "encryptdata": "TERADATA_ENCRYPTDATA",
    "dbs_port": "TERADATA_DBS_PORT",
}

_FASTLOAD = "{fn teradata_try_fastload}"
_GET_ERRORS = "{fn teradata_nativesql}{fn teradata_get_errors}"
_GET_WARNINGS = "{fn teradata_nativesql}{fn teradata_get_warnings}"
_BATCH_ROW = re.compile(r"(?:batched statement|row)\s+(\d+)", re.IGNORECASE)


class TeradataWarehouse(SqlWarehouse):
    max_identifier_length: ClassVar[int] = 128
    braze_readable: ClassVar[bool] = False  # Braze CDI cannot read Teradata (contract D.1)

    host: str = Field(description="Vantage host name.")
    user: str = Field(description="Database user.")
    password: str = Field(description="Password (or logdata for other logon mechanisms); from an EnvVar.")
    database: str = Field(description="Database that holds the cdp tables (must exist).")
    logmech: str = Field(default="TD2", description="TD2, LDAP, KRB5, TDNEGO, BEARER, JWT, …")
    encryptdata: bool = Field(default=True, description="Encrypt the traffic (the driver's default is off).")
    dbs_port: int = Field(default=1025, description="Database port (the driver's 'dbs_port').")
    tmode: str = Field(default="ANSI", description="Session mode; ANSI rejects over-long strings instead of truncating.")
    connect_timeout_ms: int = Field(default=10_000, description="Connection timeout in milliseconds.")
    string_length: int = Field(default=4000, description="VARCHAR(n) CHARACTER SET UNICODE for text columns.")
    json_length: int = Field(default=32000, description="JSON(n) CHARACTER SET UNICODE; ≤32000 keeps it out of LOBs.")
    batch_size: int = Field(default=10_000, description="Rows per executemany batch.")
    fastload_threshold: int = Field(default=100_000, description="From this many rows, stage with FastLoad.")
    fastload_batch_size: int = Field(default=100_000, description="Rows per FastLoad batch.")

    @classmethod
    def from_env(cls) -> TeradataWarehouse:
        optional: dict[str, Any] = {}
        if os.environ.get(ENV["logmech"]):
            optional["logmech"] = os.environ[ENV["logmech"]]
        if os.environ.get(ENV["encryptdata"]):
            optional["encryptdata"] = os.environ[ENV["encryptdata"]].strip().lower() not in ("false", "0", "no")
        if os.environ.get(ENV["dbs_port"]):
            optional["dbs_port"] = int(os.environ[ENV["dbs_port"]])
        return cls(
            host=EnvVar(ENV["host"]),
            user=EnvVar(ENV["user"]),
            password=EnvVar(ENV["password"]),
            database=EnvVar(ENV["database"]),
            **optional,
        )

    # ------------------------------------------------------------------------------------ connection

    def connect_kwargs(self) -> dict[str, str]:
        """The driver's parameters: every value a string, booleans in lower case, ``dbs_port`` (never
        ``port``, which the driver rejects with Error 169)."""
        return {
            "host": self.host,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "dbs_port": str(self.dbs_port),
            "logmech": self.logmech,
            "encryptdata": "true" if self.encryptdata else "false",
            "tmode": self.tmode,
            "connect_timeout": str(self.connect_timeout_ms),
        }

    def _connect(self) -> Any:
        import teradatasql

        try:
            conn = teradatasql.connect(**self.connect_kwargs())
        except teradatasql.Error as exc:
            raise WarehouseError(
                f"Cannot connect to Teradata at {self.host}:{self.dbs_port} as {self.user!r} "
                f"(logmech {self.logmech}): {_redact(_first_line(exc), self.password)}. Check {ENV['host']}, {ENV['dbs_port']}, "
                f"{ENV['user']} and {ENV['password']}."
            ) from None
        conn.autocommit = False
        return conn

    def _execute(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = conn.cursor()
        cur.execute(sql, [_bind(v) for v in params]) if params else cur.execute(sql)
        return cur

    # ------------------------------------------------------------------------------------ dialect

    def physical_type(self, ltype: LogicalType) -> str:
        return {
            LogicalType.BOOLEAN: "BYTEINT",
            LogicalType.BIGINT: "BIGINT",
            LogicalType.DOUBLE: "FLOAT",
            LogicalType.STRING: f"VARCHAR({self.string_length}) CHARACTER SET UNICODE",
            LogicalType.TIMESTAMP: "TIMESTAMP(6) WITH TIME ZONE",
            LogicalType.DATE: "DATE",
            LogicalType.JSON: f"JSON({self.json_length}) CHARACTER SET UNICODE",
        }[ltype]

    def _stage_type(self, ltype: LogicalType) -> str:
        # JSON is staged as text (FastLoad-able) and converted on the way into the target.
        if ltype is LogicalType.JSON:
            return f"VARCHAR({self.json_length}) CHARACTER SET UNICODE"
        return self.physical_type(ltype)

    def logical_type(self, physical: str) -> LogicalType:
        try:
            return _LOGICAL[physical.strip().upper()]
        except KeyError:
            raise WarehouseError(f"Teradata column type {physical!r} has no logical mapping") from None

    def _container(self, table: TableRef) -> tuple[str, ...]:
        return (self.database, f"{table.schema}__{table.name}")

    def _check_table_name(self, table: TableRef) -> None:
        name = self._container(table)[1]
        if len(name) > self.max_identifier_length:
            raise IdentifierError(
                f"Teradata table name {name[:40]!r}… (asset key {table.schema}/{table.name}) is {len(name)} "
                f"characters; Teradata allows {self.max_identifier_length}"
            )
        super()._check_table_name(table)

    def _existing_columns(self, conn: Any, table: TableRef) -> list[Column] | None:
        db, name = self._container(table)
        rows = self._execute(
            conn,
            "SELECT ColumnName, ColumnType, Nullable FROM DBC.ColumnsV WHERE DatabaseName = ? AND TableName = ? "
            "ORDER BY ColumnId",
            [db, name],
        ).fetchall()
        self._commit(conn)  # ANSI mode: even a SELECT opens a transaction; end it before any DDL
        if not rows:
            return None
        return [Column(str(n).rstrip(), self.logical_type(str(t)), str(nl).strip() == "Y") for n, t, nl in rows]

    def _create_table_sql(self, table: TableRef, cols: Sequence[Column], plan: WritePlan) -> str:
        body = ", ".join(f"{self.quote(c.name)} {self.physical_type(c.type)}" for c in cols)
        return f"CREATE MULTISET TABLE {self.fqn(table)} ({body}) {self._index_clause(plan.primary_key)}"

    def _index_clause(self, primary_key: Sequence[str]) -> str:
        # A PI on the key makes MERGE possible (C.6); without a key, NoPI spreads rows evenly.
        if not primary_key:
            return "NO PRIMARY INDEX"
        return f"PRIMARY INDEX ({', '.join(self.quote(k) for k in primary_key)})"

    def _add_column_sql(self, table: TableRef, col: Column) -> str:
        return f"ALTER TABLE {self.fqn(table)} ADD {self.quote(col.name)} {self.physical_type(col.type)}"

    def drop(self, table: TableRef) -> None:
        import teradatasql

        with self.connection() as conn:
            try:
                self._execute(conn, f"DROP TABLE {self.fqn(table)}")
                self._commit(conn)
            except teradatasql.Error as exc:
                self._rollback(conn)
                if "[Error 3807]" not in str(exc):  # 3807: the table does not exist
                    raise

    def read(self, table: TableRef, columns: Sequence[str] | None = None, slice=None) -> pd.DataFrame:
        frame = super().read(table, columns, slice)
        for col in self.columns(table) or []:  # BYTEINT comes back as 0/1
            if col.type is LogicalType.BOOLEAN and col.name in frame:
                frame[col.name] = frame[col.name].map(lambda v: None if v is None else bool(v)).astype("boolean")
        return frame

    # ------------------------------------------------------------------------------------ staging

    def _stage_column(self, index: int, col: Column) -> str:
        return self.quote(f"c{index}")

    def _select_expr(self, col: Column, staged: str) -> str:
        # Staged VARCHAR goes into JSON columns by Teradata's implicit character-to-JSON assignment cast.
        return staged

    def insert_sql(self, stage: str, cols: Sequence[Column], fastload: bool) -> str:
        names = ", ".join(self._stage_column(i, c) for i, c in enumerate(cols))
        marks = ", ".join("?" for _ in cols)
        return f"{_FASTLOAD if fastload else ''}INSERT INTO {stage} ({names}) VALUES ({marks})"

    def _stage(self, conn: Any, table: TableRef, frame: pd.DataFrame, cols: Sequence[Column]) -> str:
        # FastLoad needs an empty *permanent* table (no volatile table, no GTT): a fresh one per write.
        stage = f"{self.quote(self.database)}.{self.quote(f'_cdp_stage_{uuid.uuid4().hex}')}"
        body = ", ".join(f"{self._stage_column(i, c)} {self._stage_type(c.type)}" for i, c in enumerate(cols))
        self._execute(conn, f"CREATE MULTISET TABLE {stage} ({body}) NO PRIMARY INDEX")
        self._commit(conn)
        try:
            if len(frame) >= self.fastload_threshold:
                self._fastload(conn, stage, frame, cols)
            elif not frame.empty:
                self._batched_insert(conn, stage, frame, cols)
        except BaseException:
            self._rollback(conn)
            self._unstage(conn, stage)
            raise
        return stage

    def _batched_insert(self, conn: Any, stage: str, frame: pd.DataFrame, cols: Sequence[Column]) -> None:
        import teradatasql

        sql = self.insert_sql(stage, cols, fastload=False)
        cur = conn.cursor()
        for start, rows in _batches(frame, self.batch_size):
            try:
                cur.executemany(sql, rows)
            except teradatasql.Error as exc:
                raise _batch_error(exc, stage, frame, start, len(rows)) from None
        self._commit(conn)

    def _fastload(self, conn: Any, stage: str, frame: pd.DataFrame, cols: Sequence[Column]) -> None:
        """FastLoad in several batches, reading both error tables (C.4): after each batch for error table 1,
        after the commit for error table 2."""
        import teradatasql

        sql = self.insert_sql(stage, cols, fastload=True)
        plain = self.insert_sql(stage, cols, fastload=False)
        cur = conn.cursor()
        problems: list[str] = []
        for start, rows in _batches(frame, self.fastload_batch_size):
            try:
                cur.execute(sql, rows)
            except teradatasql.Error as exc:
                raise _batch_error(exc, stage, frame, start, len(rows)) from None
            problems += self._fastload_messages(cur, plain)
        self._commit(conn)
        problems += self._fastload_messages(cur, plain)
        if problems:
            raise WarehouseError(
                f"FastLoad into staging for {len(frame)} rows reported {len(problems)} error(s); nothing was "
                "written to the target. First errors:\n" + "\n".join(problems[:10])
            )

    def _fastload_messages(self, cur: Any, insert: str) -> list[str]:
        cur.execute(_GET_WARNINGS + insert)
        for (warning,) in cur.fetchall() or []:
            get_dagster_logger().warning(f"FastLoad warning: {warning}")
        cur.execute(_GET_ERRORS + insert)
        return [str(row[0]) for row in cur.fetchall() or []]

    def _unstage(self, conn: Any, stage: str) -> None:
        with contextlib.suppress(Exception):
            self._execute(conn, f"DROP TABLE {stage}")
            self._commit(conn)

    # ------------------------------------------------------------------------------------ statements

    def _apply_schema(self, conn, plan: WritePlan, cols, existing, additions) -> None:
        # One DDL statement per transaction: only COMMIT may follow DDL (Error 3722).
        if existing is not None and not additions:
            return
        statements = (
            [self._create_table_sql(plan.table, cols, plan)]
            if existing is None
            else [self._add_column_sql(plan.table, c) for c in additions]
        )
        for sql in statements:
            try:
                self._execute(conn, sql)
                self._commit(conn)
            except BaseException:
                self._rollback(conn)
                raise

    def data_statements(self, plan: WritePlan, stage: str, cols: Sequence[Column]) -> list[tuple[str, list[Any]]]:
        if plan.mode is not WriteMode.MERGE:
            return super().data_statements(plan, stage, cols)
        # MERGE needs an equality on the target's primary index (the asset's key) and never updates it.
        target = self.fqn(plan.table)
        source = ", ".join(
            f"{self._select_expr(c, self._stage_column(i, c))} AS {self.quote(c.name)}" for i, c in enumerate(cols)
        )
        keys = {k.casefold() for k in plan.primary_key}
        on = " AND ".join(f"t.{self.quote(c.name)} = s.{self.quote(c.name)}" for c in cols if c.name.casefold() in keys)
        updates = ", ".join(f"{self.quote(c.name)} = s.{self.quote(c.name)}" for c in cols if c.name.casefold() not in keys)
        names = ", ".join(self.quote(c.name) for c in cols)
        values = ", ".join(f"s.{self.quote(c.name)}" for c in cols)
        sql = f"MERGE INTO {target} AS t USING (SELECT {source} FROM {stage}) AS s ON {on}"
        if updates:
            sql += f" WHEN MATCHED THEN UPDATE SET {updates}"
        sql += f" WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
        return [(sql, [])]


# ---------------------------------------------------------------------------------------------- helpers


def _bind(v: Any) -> Any:
    """One value as the driver binds it (C.3): tz-aware datetimes for TIMESTAMP WITH TIME ZONE, NULL as None."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    if isinstance(v, (bool, np.bool_)):
        return int(bool(v))  # BYTEINT 0/1
    if hasattr(v, "item") and not isinstance(v, (str, bytes, dt.date)):
        return v.item()  # numpy scalar -> Python int/float
    return v


def _batches(frame: pd.DataFrame, size: int) -> Iterator[tuple[int, list[list[Any]]]]:
    for start in range(0, len(frame), size):
        chunk = frame.iloc[start : start + size]
        yield start, [[_bind(v) for v in row] for row in chunk.itertuples(index=False, name=None)]


def _batch_error(exc: Exception, stage: str, frame: pd.DataFrame, start: int, size: int) -> WarehouseError:
    """The driver's error with the rows it names (1-based within the batch) or, if it names none, the range."""
    message = str(exc)
    numbers = sorted({int(n) for n in _BATCH_ROW.findall(message) if 1 <= int(n) <= size})
    if numbers:
        rows = frame.iloc[[start + n - 1 for n in numbers[:5]]]
        detail = f"failing rows (frame positions {[start + n - 1 for n in numbers]}):\n{rows.to_string(max_colwidth=60)}"
    else:
        detail = f"the driver named no row; the batch held frame rows {start}..{start + size - 1}"
    return WarehouseError(f"Loading staging table {stage} failed: {_first_line(exc)}\n{detail}")


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
