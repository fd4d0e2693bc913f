"""DuckDB: the embedded default warehouse (one file under the project's data folder).

DuckDB allows one writing process per file. Connections here are short-lived (one per read or write) and
opening one waits out another process's lock instead of failing; runs that write DuckDB are also limited
to one at a time by the ``cdp/warehouse`` tag limit in ``dagster.yaml``.
"""

from __future__ import annotations

import contextlib
import threading
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


class DuckDBHold:
    """DuckDB only: keep the database open across consecutive batch writes for up to ``max_seconds``, with
    the instance limited to ``MEMORY_LIMIT`` and ``THREADS`` and automatic checkpoints off; then (and at the
    end) checkpoint once, put the previous settings back and close. Other warehouses: no-op.

    DuckDB shares one open database between the connections of a process, so each ``warehouse.write``
    (its own short connection, its own transaction, committed as before) runs in the held instance. Why:

    * checkpoints: a connection per write means a checkpoint per write when its last connection closes, and
      each checkpoint rewrites the table's last, partly filled row group (up to 122,880 rows), not just the
      new rows. Measured on 300,000 contacts in 20,000-row merges: ~3.8 s of CPU with a checkpoint per
      batch, ~1.8 s with one per held period;
    * memory: under DuckDB's default limit (80% of RAM) the peak memory of a write grows with the table
      (+0 MB at 60,000 contacts, +220 MB at 300,000); at 32 MB the writer's peak is 372 MB at 30,000 and
      404 MB at 300,000 for the same CPU time (64 MB: 376 and 430), and larger batches or a 16 MB limit
      still work (DuckDB spills to a temporary file);
    * one thread: the write overlaps the fetch of the next pages, and a second DuckDB thread only competes
      with the fetching thread (and, locally, the simulator) for the CPU.

    Every write is still its own committed transaction (in the write-ahead log until the checkpoint), so a
    crash loses nothing that was committed. The file lock is held for the whole period: another process's
    writer waits at most ``max_seconds`` plus one write, well within ``DuckDBWarehouse.lock_timeout_seconds``."""

    MEMORY_LIMIT = "32MB"
    THREADS = 1

    def __init__(self, warehouse: Any, max_seconds: float = 15.0, memory_limit: str | None = MEMORY_LIMIT):
        self.warehouse = warehouse
        self.enabled = isinstance(warehouse, DuckDBWarehouse)
        self.max_seconds = max_seconds
        self.memory_limit = memory_limit  # None: leave DuckDB's own limit
        self.conn: Any = None
        self.opened = 0.0
        self.periods = 0

    def before_write(self) -> None:
        if not self.enabled or self.conn is not None:
            return
        conn = self.warehouse._connect()  # same path and config as the writes: the instance is shared
        try:
            conn.execute("ROLLBACK")  # _connect opens a transaction; this connection only holds settings
            with _HOLDS_LOCK:  # holds on one file share the settings: the first sets them, the last restores
                count, previous = _HOLDS.get(self.key, (0, None))
                if count == 0:
                    previous = conn.execute("SELECT current_setting('memory_limit'), current_setting('threads'), "
                                            "current_setting('checkpoint_threshold')").fetchone()
                    if self.memory_limit:
                        conn.execute(f"SET memory_limit = '{self.memory_limit}'")
                    conn.execute(f"SET threads = {int(self.THREADS)}")
                    conn.execute("SET checkpoint_threshold = '1TB'")  # checkpoint in release(), not per commit
                _HOLDS[self.key] = (count + 1, previous)
        except BaseException:
            conn.close()
            raise
        self.conn, self.opened = conn, time.monotonic()
        self.periods += 1

    def __enter__(self) -> "DuckDBHold":
        """For one uninterrupted period (``max_seconds=math.inf``): hold now, checkpoint and close on exit."""
        self.before_write()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def key(self) -> str:
        return str(Path(self.warehouse.database).resolve())  # type: ignore[attr-defined]

    def after_write(self) -> None:
        if self.conn is not None and time.monotonic() - self.opened >= self.max_seconds:
            self.release()

    def release(self) -> None:
        """Checkpoint under the limits; the last hold on the file restores the previous settings (another
        connection of the process may keep the instance open); close."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            with contextlib.suppress(duckdb.Error):  # refused while another connection has a transaction open
                conn.execute("CHECKPOINT")
            with _HOLDS_LOCK:
                count, previous = _HOLDS.pop(self.key, (1, None))
                if count > 1:
                    _HOLDS[self.key] = (count - 1, previous)
                elif previous is not None:
                    with contextlib.suppress(duckdb.Error):
                        conn.execute(f"SET memory_limit = '{previous[0]}'")
                        conn.execute(f"SET threads = {int(previous[1])}")
                        conn.execute(f"SET checkpoint_threshold = '{previous[2]}'")
        finally:
            conn.close()


#: database file -> (holds open, settings before the first)
_HOLDS: dict[str, tuple[int, tuple[str, str, str] | None]] = {}
_HOLDS_LOCK = threading.Lock()
