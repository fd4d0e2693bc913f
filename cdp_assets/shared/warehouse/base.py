"""The one small warehouse interface, and the shared write algorithm for SQL warehouses.

``WarehouseResource`` is what assets, I/O managers and checks talk to: ``write``, ``read``, ``columns``,
``row_count``, ``fqn``. Each warehouse is one subclass. Backends that speak DB-API SQL inherit
``SqlWarehouse``, which owns the semantics every backend must share (and the conformance suite checks):

* schema first: a missing table is created, new frame columns are added (additive evolution), a type change
  raises ``SchemaChangeError`` naming table, column, old and new type; nothing else is ever altered;
* then the data in **one transaction** against a staged copy of the frame: ``replace`` = delete all + insert,
  ``partition`` = delete the slice + insert, ``merge`` = delete matching keys + insert, ``append`` = insert.
  A failure anywhere rolls back, so readers keep seeing the previous table;
* an empty frame is a no-op except in ``replace`` mode;
* every identifier is quoted by ``quote``; values are always bound parameters, never pasted into SQL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
from abc import abstractmethod
from typing import Any, ClassVar, Iterator, Sequence

import pandas as pd
from dagster import ConfigurableResource, get_dagster_logger

from .types import (
    Column,
    IdentifierError,
    LogicalType,
    SchemaChangeError,
    Slice,
    TableRef,
    WarehouseError,
    WriteMode,
    WritePlan,
    WriteResult,
    check_column_names,
    compatible,
    dedupe_last,
    prepare_frame,
)


class WarehouseResource(ConfigurableResource):
    """Interface every warehouse implements. Configuration fields live on the subclasses."""

    #: Identifier limit of the warehouse (characters, NFD-normalised).
    max_identifier_length: ClassVar[int] = 128

    @property
    def kind(self) -> str:  # for asset kinds and metadata
        return type(self).__name__.removesuffix("Warehouse").lower()

    # Braze CDI can read only some warehouses (contract D.1); others must refuse Braze tables clearly.
    braze_readable: ClassVar[bool] = False

    @abstractmethod
    def write(self, df: pd.DataFrame, plan: WritePlan) -> WriteResult: ...

    @abstractmethod
    def read(self, table: TableRef, columns: Sequence[str] | None = None, slice: Slice | None = None) -> pd.DataFrame: ...

    @abstractmethod
    def columns(self, table: TableRef) -> list[Column] | None:
        """The table's columns, or None if it does not exist."""

    @abstractmethod
    def row_count(self, table: TableRef) -> int: ...

    @abstractmethod
    def fqn(self, table: TableRef) -> str:
        """Fully qualified, quoted table name as the warehouse spells it (for metadata and logs)."""

    @abstractmethod
    def drop(self, table: TableRef) -> None:
        """Drop a table if it exists (tests and explicit full resets only)."""


class SqlWarehouse(WarehouseResource):
    """Shared algorithm for DB-API warehouses. Subclasses supply connection, dialect and staging."""

    # ----------------------------------------------------------------------------------- dialect hooks

    @abstractmethod
    def _connect(self) -> Any:
        """A new DB-API connection with autocommit OFF (or the backend's equivalent)."""

    placeholder: ClassVar[str] = "?"

    def quote(self, name: str) -> str:
        if "\x00" in name:
            raise IdentifierError(f"identifier {name!r} contains a NUL character")
        return '"' + name.replace('"', '""') + '"'

    @abstractmethod
    def physical_type(self, ltype: LogicalType) -> str: ...

    @abstractmethod
    def logical_type(self, physical: str) -> LogicalType: ...

    @abstractmethod
    def _container(self, table: TableRef) -> tuple[str, ...]:
        """Physical coordinates, e.g. (database, schema, table)."""

    def fqn(self, table: TableRef) -> str:
        return ".".join(self.quote(p) for p in self._container(table))

    def _check_table_name(self, table: TableRef) -> None:
        for part in self._container(table):
            check_column_names([part], self.max_identifier_length, f"table {table.schema}.{table.name}")

    @abstractmethod
    def _existing_columns(self, conn: Any, table: TableRef) -> list[Column] | None: ...

    def _ensure_container(self, conn: Any, table: TableRef) -> None:
        """Create the schema/dataset if needed (DDL, committed on its own)."""

    def _create_table_sql(self, table: TableRef, cols: Sequence[Column], plan: WritePlan) -> str:
        body = ", ".join(f"{self.quote(c.name)} {self.physical_type(c.type)}" for c in cols)
        return f"CREATE TABLE {self.fqn(table)} ({body})"

    def _add_column_sql(self, table: TableRef, col: Column) -> str:
        return f"ALTER TABLE {self.fqn(table)} ADD COLUMN {self.quote(col.name)} {self.physical_type(col.type)}"

    @abstractmethod
    def _stage(self, conn: Any, table: TableRef, frame: pd.DataFrame, cols: Sequence[Column]) -> str:
        """Make the frame readable in SQL (staging table or registered view); return its SQL name."""

    @abstractmethod
    def _unstage(self, conn: Any, stage: str) -> None: ...

    def _begin(self, conn: Any) -> None:
        """Start the data transaction (DB-API connections with autocommit off are already in one)."""

    def _commit(self, conn: Any) -> None:
        conn.commit()

    def _rollback(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            conn.rollback()

    def _execute(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = conn.cursor()
        cur.execute(sql, list(params)) if params else cur.execute(sql)
        return cur

    def _stage_column(self, index: int, col: Column) -> str:
        """The staged copy's column for the frame's ``index``-th column (backends whose loaders mangle
        hostile names stage positional names instead; ``_stage`` must agree)."""
        return self.quote(col.name)

    def _select_expr(self, col: Column, staged: str) -> str:
        """How a staged column (``staged``, already quoted) is read into the target (backends cast where
        staging loses type)."""
        return staged

    # ----------------------------------------------------------------------------------- statements

    def _slice_predicate(self, s: Slice, qualifier: str = "") -> tuple[str, list[Any]]:
        col = f"{qualifier}{self.quote(s.column)}"
        if s.values:
            marks = ", ".join(self.placeholder for _ in s.values)
            return f"{col} IN ({marks})", list(s.values)
        return f"{col} >= {self.placeholder} AND {col} < {self.placeholder}", [s.start, s.end]

    def data_statements(self, plan: WritePlan, stage: str, cols: Sequence[Column]) -> list[tuple[str, list[Any]]]:
        """The statements of the data transaction, in order. Public so SQL-level tests can check them."""
        target = self.fqn(plan.table)
        names = ", ".join(self.quote(c.name) for c in cols)
        select = ", ".join(self._select_expr(c, self._stage_column(i, c)) for i, c in enumerate(cols))
        insert = (f"INSERT INTO {target} ({names}) SELECT {select} FROM {stage}", [])
        if plan.mode is WriteMode.APPEND:
            return [insert]
        if plan.mode is WriteMode.REPLACE:
            return [(f"DELETE FROM {target}", []), insert]
        if plan.mode is WriteMode.PARTITION:
            assert plan.slice is not None
            pred, params = self._slice_predicate(plan.slice)
            return [(f"DELETE FROM {target} WHERE {pred}", params), insert]
        # MERGE: delete the keys being written, then insert them; same effect as MERGE, portable, one txn.
        staged = {c.name: self._stage_column(i, c) for i, c in enumerate(cols)}
        match = " AND ".join(f"s.{staged[k]} = {target}.{self.quote(k)}" for k in plan.primary_key)
        return [(f"DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM {stage} s WHERE {match})", []), insert]

    # ----------------------------------------------------------------------------------- interface

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        conn = self._connect()
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def columns(self, table: TableRef) -> list[Column] | None:
        with self.connection() as conn:
            return self._existing_columns(conn, table)

    def row_count(self, table: TableRef) -> int:
        with self.connection() as conn:
            return int(self._execute(conn, f"SELECT COUNT(*) FROM {self.fqn(table)}").fetchone()[0])

    def drop(self, table: TableRef) -> None:
        with self.connection() as conn:
            self._execute(conn, f"DROP TABLE IF EXISTS {self.fqn(table)}")
            self._commit(conn)

    def read(self, table: TableRef, columns: Sequence[str] | None = None, slice: Slice | None = None) -> pd.DataFrame:
        with self.connection() as conn:
            existing = self._existing_columns(conn, table)
            if existing is None:
                raise WarehouseError(f"{self.fqn(table)} does not exist yet: materialize its asset first")
            types = {c.name: c.type for c in existing}
            select = ", ".join(self.quote(c) for c in columns) if columns else "*"
            sql = f"SELECT {select} FROM {self.fqn(table)}"
            params: list[Any] = []
            if slice is not None:
                s = _coerce_slice(slice, types.get(slice.column))
                pred, params = self._slice_predicate(s)
                sql += f" WHERE {pred}"
            return self._fetch_frame(conn, sql, params)

    def _fetch_frame(self, conn: Any, sql: str, params: Sequence[Any]) -> pd.DataFrame:
        cur = self._execute(conn, sql, params)
        names = [d[0] for d in cur.description]
        return pd.DataFrame.from_records(cur.fetchall(), columns=names)

    def write(self, df: pd.DataFrame, plan: WritePlan) -> WriteResult:
        fqn = self.fqn(plan.table)
        self._check_table_name(plan.table)
        check_column_names(df.columns, self.max_identifier_length, fqn)
        started = time.monotonic()
        with self.connection() as conn:
            existing = self._existing_columns(conn, plan.table)
            by_name = {c.name.casefold(): c for c in existing or []}
            declared = {n: plan.column_types[n] for n in df.columns if n in plan.column_types}
            declared.update({n: by_name[n.casefold()].type for n in df.columns if n.casefold() in by_name})
            frame, cols = prepare_frame(df, declared, plan.encoded_json)
            plan = _validate(plan, frame, cols, fqn)
            if plan.mode is WriteMode.MERGE:
                frame = dedupe_last(frame, plan.primary_key)
            additions = []
            for c in cols:
                old = by_name.get(c.name.casefold())
                if old is None:
                    additions.append(c)
                elif not compatible(c.type, old.type):
                    raise SchemaChangeError(fqn, c.name, old.type, c.type)
            if frame.empty and plan.mode is not WriteMode.REPLACE and existing is not None:
                return WriteResult(
                    fqn, plan.mode, 0, self._count(conn, plan.table), existing,
                    skipped_reason="empty frame: the table was left exactly as it was",
                )
            self._apply_schema(conn, plan, cols, existing, additions)
            target_cols = [by_name.get(c.name.casefold(), c) for c in cols]
            stage = self._stage(conn, plan.table, frame, cols)
            try:
                self._run_transaction(conn, self.data_statements(plan, stage, target_cols))
            finally:
                self._unstage(conn, stage)
            row_count = self._count(conn, plan.table)
            # Without DDL in this write the table's columns are the ones read above; re-reading the catalog
            # costs a query per write (a tenth of a small merge on DuckDB).
            unchanged = existing is not None and not additions
            final_cols = existing if unchanged else (self._existing_columns(conn, plan.table) or cols)
        get_dagster_logger().debug(
            f"{fqn}: {plan.mode.value} of {len(frame)} rows in {time.monotonic() - started:.2f}s"
        )
        return WriteResult(fqn, plan.mode, len(frame), row_count, final_cols, [c.name for c in additions] if existing else [])

    def _run_transaction(self, conn: Any, statements: Sequence[tuple[str, list[Any]]]) -> None:
        """Run the data statements as one transaction; any failure rolls all of them back."""
        try:
            self._begin(conn)
            for sql, params in statements:
                self._execute(conn, sql, params)
            self._commit(conn)
        except BaseException:
            self._rollback(conn)
            raise

    def _count(self, conn: Any, table: TableRef) -> int:
        return int(self._execute(conn, f"SELECT COUNT(*) FROM {self.fqn(table)}").fetchone()[0])

    def _apply_schema(self, conn, plan: WritePlan, cols, existing, additions) -> None:
        if existing is not None and not additions:
            return
        self._ensure_container(conn, plan.table)
        try:
            if existing is None:
                self._execute(conn, self._create_table_sql(plan.table, cols, plan))
            else:
                for col in additions:
                    self._execute(conn, self._add_column_sql(plan.table, col))
            self._commit(conn)
        except BaseException:
            self._rollback(conn)
            raise


def _validate(plan: WritePlan, frame: pd.DataFrame, cols: Sequence[Column], fqn: str) -> WritePlan:
    names = {c.name for c in cols}
    types = {c.name: c.type for c in cols}
    missing = [k for k in plan.primary_key if k not in names]
    if missing and plan.mode is WriteMode.MERGE:
        raise WarehouseError(f"{fqn}: primary key column(s) {missing} are not in the data (columns: {sorted(names)})")
    if plan.mode is WriteMode.MERGE and not frame.empty:
        nulls = {k: int(frame[k].isna().sum()) for k in plan.primary_key if frame[k].isna().any()}
        if nulls:
            raise WarehouseError(f"{fqn}: primary key column(s) have NULLs, refusing to merge: {nulls}")
    if plan.mode is WriteMode.PARTITION:
        assert plan.slice is not None
        if plan.slice.column not in names:
            raise WarehouseError(f"{fqn}: partition column {plan.slice.column!r} is not in the data")
        s = _coerce_slice(plan.slice, types[plan.slice.column])
        if not frame.empty:
            outside = ~s.contains(frame[s.column]).fillna(False)
            if outside.any():
                example = frame.loc[outside, s.column].iloc[0]
                raise WarehouseError(
                    f"{fqn}: {int(outside.sum())} row(s) have {s.column}={example!r}, outside the partition "
                    f"being written ({_describe(s)}); refusing to touch other partitions"
                )
        plan = dataclasses.replace(plan, slice=s)
    return plan


def _describe(s: Slice) -> str:
    return f"{s.column} in {list(s.values)}" if s.values else f"{s.start} <= {s.column} < {s.end}"


def _coerce_slice(s: Slice, ltype: LogicalType | None) -> Slice:
    """Bring partition bounds to the column's type (Dagster time windows are datetimes)."""

    def conv(v: Any) -> Any:
        if v is None:
            return None
        if ltype is LogicalType.DATE:
            return pd.Timestamp(v).date()
        if ltype is LogicalType.TIMESTAMP:
            ts = pd.Timestamp(v)
            return (ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")).to_pydatetime()
        if ltype is LogicalType.STRING and isinstance(v, (dt.date, dt.datetime, pd.Timestamp)):
            return pd.Timestamp(v).date().isoformat() if ltype else v
        return v

    return Slice(s.column, conv(s.start), conv(s.end), tuple(conv(v) for v in s.values))
