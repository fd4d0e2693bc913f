"""DuckDB: the embedded default warehouse (one file under the project's data folder).

DuckDB allows one writing process per file. Connections here are short-lived (one per read or write) and
opening one waits out another process's lock instead of failing; runs that write DuckDB are also limited
to one at a time by the ``cdp/warehouse`` tag limit in ``dagster.yaml``.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, ClassVar, Sequence

import duckdb
import pandas as pd
import pyarrow as pa
from pydantic import Field

from ..env import data_dir
from .base import SqlWarehouse
from .types import Column, LogicalType, TableRef, WarehouseError

_PHYSICAL = {
    LogicalType.BOOLEAN: "BOOLEAN",
    LogicalType.BIGINT: "BIGINT",
    LogicalType.DOUBLE: "DOUBLE",
    LogicalType.STRING: "VARCHAR",
    LogicalType.TIMESTAMP: "TIMESTAMPTZ",
    LogicalType.DATE: "DATE",
    LogicalType.JSON: "JSON",
}
_LOGICAL = {
    "BOOLEAN": LogicalType.BOOLEAN,
    "BIGINT": LogicalType.BIGINT,
    "INTEGER": LogicalType.BIGINT,
    "HUGEINT": LogicalType.BIGINT,
    "DOUBLE": LogicalType.DOUBLE,
    "FLOAT": LogicalType.DOUBLE,
    "VARCHAR": LogicalType.STRING,
    "TIMESTAMP WITH TIME ZONE": LogicalType.TIMESTAMP,
    "TIMESTAMP": LogicalType.TIMESTAMP,
    "DATE": LogicalType.DATE,
    "JSON": LogicalType.JSON,
}


#: Arrow types for object columns that ``prepare_frame`` leaves as Python strings (text, JSON text) or dates.
_ARROW_TEXT = {LogicalType.STRING: pa.string(), LogicalType.JSON: pa.string(), LogicalType.DATE: pa.date32()}


def default_duckdb_path() -> str:
    return str(data_dir() / "cdp.duckdb")


class DuckDBWarehouse(SqlWarehouse):
    """Embedded DuckDB file. ``database`` is a path (``:memory:`` is refused: runs use several processes)."""

    max_identifier_length: ClassVar[int] = 255  # DuckDB has no hard limit; keep names portable-ish
    braze_readable: ClassVar[bool] = True  # locally only: stands in for Snowflake/BigQuery (contract D.1)

    database: str = Field(default_factory=default_duckdb_path, description="Path of the DuckDB file.")
    lock_timeout_seconds: float = Field(default=300.0, description="How long to wait for another writer.")

    def _connect(self) -> Any:
        if self.database == ":memory:":
            raise WarehouseError("DuckDBWarehouse needs a file path; ':memory:' cannot be shared between steps")
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.05
        while True:
            try:
                conn = duckdb.connect(self.database)
                break
            except duckdb.IOException as exc:  # another process holds the write lock
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("BEGIN TRANSACTION")
        return conn

    def physical_type(self, ltype: LogicalType) -> str:
        return _PHYSICAL[ltype]

    def logical_type(self, physical: str) -> LogicalType:
        base = physical.upper().split("(")[0].strip()
        if base.startswith("DECIMAL"):
            return LogicalType.DOUBLE
        try:
            return _LOGICAL[base]
        except KeyError:
            raise WarehouseError(f"DuckDB type {physical!r} has no logical mapping") from None

    def _container(self, table: TableRef) -> tuple[str, ...]:
        # The file's catalog is named after it up to the first dot ("bench" for bench.duckdb). A schema of the
        # same name makes "bench"."events" ambiguous (catalog.table or schema.table?): qualify only then, so
        # the usual names stay "schema"."table".
        catalog = Path(self.database).name.split(".")[0]
        if table.schema == catalog:
            return (catalog, table.schema, table.name)
        return (table.schema, table.name)

    def _existing_columns(self, conn: Any, table: TableRef) -> list[Column] | None:
        # DESCRIBE of the quoted name instead of information_schema.columns: ~0.3 ms instead of ~2.5 ms, which
        # was a tenth of a small merge's cost. A failed DESCRIBE would abort the open transaction, so the
        # name is bound first through a relation (which fails without touching the transaction).
        fqn = self.fqn(table)
        try:
            conn.table(fqn)
        except duckdb.CatalogException:
            return None
        rows = conn.execute(f"DESCRIBE {fqn}").fetchall()
        return [Column(r[0], self.logical_type(r[1]), r[2] == "YES") for r in rows]

    def _ensure_container(self, conn: Any, table: TableRef) -> None:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.quote(table.schema)}")

    def _stage(self, conn: Any, table: TableRef, frame: pd.DataFrame, cols: Sequence[Column]) -> str:
        # No copy: DuckDB scans the Arrow table in place inside the write transaction. Text columns are
        # converted with their type given (pyarrow infers object columns value by value otherwise: ~5x slower,
        # ~5 us a row for a typical event table); a column that does not convert so falls back to inference.
        name = f"_cdp_stage_{uuid.uuid4().hex}"
        arrays = []
        for i, col in enumerate(cols):
            values = frame.iloc[:, i]
            arrow_type = _ARROW_TEXT.get(col.type) if values.dtype == object else None
            try:
                arrays.append(pa.Array.from_pandas(values, type=arrow_type))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                arrays.append(pa.Array.from_pandas(values))
        conn.register(name, pa.Table.from_arrays(arrays, names=list(frame.columns)))
        return self.quote(name)

    def _unstage(self, conn: Any, stage: str) -> None:
        conn.unregister(stage.strip('"'))

    def _begin(self, conn: Any) -> None:
        pass  # _connect and _commit keep a transaction open at all times

    def _commit(self, conn: Any) -> None:
        conn.execute("COMMIT")
        conn.execute("BEGIN TRANSACTION")

    def _rollback(self, conn: Any) -> None:
        try:
            conn.execute("ROLLBACK")
            conn.execute("BEGIN TRANSACTION")
        except duckdb.Error:
            pass

    def _execute(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        return conn.execute(sql, list(params)) if params else conn.execute(sql)

    def _fetch_frame(self, conn: Any, sql: str, params: Sequence[Any]) -> pd.DataFrame:
        # Through Arrow so DATE columns come back as ``datetime.date`` like every other backend (``.df()``
        # turns them into datetime64, which then no longer compares equal to the dates that were written).
        # A relation, not a DB-API result: DuckDB 2 warns that Arrow from the latter costs an extra copy.
        rel = conn.sql(sql, params=list(params)) if params else conn.sql(sql)
        to_arrow = getattr(rel, "to_arrow_table", None) or rel.arrow  # duckdb 2.x | 1.x
        return to_arrow().to_pandas(date_as_object=True)

    def _select_expr(self, col: Column, staged: str) -> str:
        return f"CAST({staged} AS {self.physical_type(col.type)})"
