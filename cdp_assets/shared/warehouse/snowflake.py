"""Snowflake: connections from dagster-snowflake's ``SnowflakeResource``, data staged with ``write_pandas``.

How a write goes:

1. schema first (shared algorithm): ``CREATE SCHEMA/TABLE IF NOT EXISTS``, ``ALTER TABLE … ADD COLUMN`` for
   new frame columns (Snowflake DDL commits on its own, so it never shares the data transaction);
2. the frame is loaded with ``write_pandas`` (PUT + COPY of Parquet) into a session-scoped TEMPORARY table
   whose columns are positional (``c0``, ``c1``…), so hostile column names never reach the loader;
3. the data change is one atomic unit: a single ``MERGE`` for ``merge`` (a lone statement is atomic in
   Snowflake), otherwise ``BEGIN; DELETE …; INSERT … SELECT …; COMMIT``. Any failure rolls back, so
   readers keep seeing the previous rows.

Authentication is a password or a key pair, both from ``dagster.EnvVar`` (see ``from_env``).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Any, ClassVar, Iterator, Sequence

import pandas as pd
from dagster import EnvVar
from dagster_snowflake import SnowflakeResource
from pydantic import Field

from ..env import ConfigError
from .base import SqlWarehouse
from .types import Column, LogicalType, TableRef, WarehouseError, WriteMode, WritePlan

_PHYSICAL = {
    LogicalType.BOOLEAN: "BOOLEAN",
    LogicalType.BIGINT: "NUMBER(38,0)",
    LogicalType.DOUBLE: "FLOAT",
    LogicalType.STRING: "VARCHAR",
    LogicalType.TIMESTAMP: "TIMESTAMP_TZ",
    LogicalType.DATE: "DATE",
    LogicalType.JSON: "VARIANT",
}
_LOGICAL = {
    "BOOLEAN": LogicalType.BOOLEAN,
    "FLOAT": LogicalType.DOUBLE,
    "DOUBLE": LogicalType.DOUBLE,
    "REAL": LogicalType.DOUBLE,
    "TEXT": LogicalType.STRING,
    "VARCHAR": LogicalType.STRING,
    "STRING": LogicalType.STRING,
    "TIMESTAMP_TZ": LogicalType.TIMESTAMP,
    "TIMESTAMP_LTZ": LogicalType.TIMESTAMP,
    "TIMESTAMP_NTZ": LogicalType.TIMESTAMP,  # e.g. Braze's UPDATED_AT; we write UTC into it
    "DATE": LogicalType.DATE,
    "VARIANT": LogicalType.JSON,
    "OBJECT": LogicalType.JSON,
    "ARRAY": LogicalType.JSON,
}

#: Variables ``from_env`` reads (names only; the values stay inside ``EnvVar``).
ENV = {
    "account": "SNOWFLAKE_ACCOUNT",
    "user": "SNOWFLAKE_USER",
    "password": "SNOWFLAKE_PASSWORD",
    "private_key": "SNOWFLAKE_PRIVATE_KEY",
    "private_key_path": "SNOWFLAKE_PRIVATE_KEY_PATH",
    "private_key_password": "SNOWFLAKE_PRIVATE_KEY_PASSWORD",
    "database": "SNOWFLAKE_DATABASE",
    "warehouse": "SNOWFLAKE_WAREHOUSE",
    "role": "SNOWFLAKE_ROLE",
    "schema_prefix": "SNOWFLAKE_SCHEMA_PREFIX",
}


class SnowflakeWarehouse(SqlWarehouse):
    """Tables live in ``<database>.<schema_prefix><asset key prefix>.<name>``, every name quoted."""

    max_identifier_length: ClassVar[int] = 255
    braze_readable: ClassVar[bool] = True
    placeholder: ClassVar[str] = "?"  # needs the connector's qmark (server-side) binding; checked on connect
    #: Session-scoped, never visible to readers, gone even if the process dies mid-write.
    stage_table_kind: ClassVar[str] = "TEMPORARY"

    snowflake: SnowflakeResource = Field(description="dagster-snowflake resource that opens the connections.")
    database: str = Field(description="Database holding the cdp schemas (also set on the connection).")
    schema_prefix: str = Field(default="", description="Prepended to every schema name, e.g. 'CDP_' or 'DEV_'.")

    @classmethod
    def from_env(cls) -> SnowflakeWarehouse:
        """Everything from environment variables through ``EnvVar``: a missing one fails when the resource
        starts, naming the variable. Key-pair auth is used when ``SNOWFLAKE_PRIVATE_KEY(_PATH)`` is set,
        otherwise ``SNOWFLAKE_PASSWORD``."""
        if os.environ.get(ENV["private_key_path"]):
            auth: dict[str, Any] = {"private_key_path": EnvVar(ENV["private_key_path"])}
        elif os.environ.get(ENV["private_key"]):
            auth = {"private_key": EnvVar(ENV["private_key"])}
        else:
            auth = {"password": EnvVar(ENV["password"])}
        if "password" not in auth and os.environ.get(ENV["private_key_password"]):
            auth["private_key_password"] = EnvVar(ENV["private_key_password"])
        optional = {k: EnvVar(ENV[k]) for k in ("warehouse", "role") if os.environ.get(ENV[k])}
        return cls(
            snowflake=SnowflakeResource(
                account=EnvVar(ENV["account"]),
                user=EnvVar(ENV["user"]),
                database=EnvVar(ENV["database"]),
                paramstyle="qmark",
                timezone="UTC",
                login_timeout=30,
                **auth,
                **optional,
            ),
            database=EnvVar(ENV["database"]),
            schema_prefix=os.environ.get(ENV["schema_prefix"], ""),
        )

    # ------------------------------------------------------------------------------------ connection

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        if self.snowflake.paramstyle != "qmark":
            raise ConfigError("SnowflakeWarehouse needs SnowflakeResource(paramstyle='qmark') for bound parameters")
        try:
            cm = self.snowflake.get_connection()
            conn = cm.__enter__()
        except Exception as exc:  # the connector's messages never contain the password or key
            raise WarehouseError(
                f"Cannot connect to Snowflake account {self.snowflake.account!r} as {self.snowflake.user!r}: "
                f"{type(exc).__name__}: {exc}. Check SNOWFLAKE_ACCOUNT, SNOWFLAKE_USER and the password or key."
            ) from None
        try:
            yield conn
        finally:
            cm.__exit__(None, None, None)

    def _connect(self) -> Any:  # connections come from the SnowflakeResource in ``connection``
        raise NotImplementedError

    def _begin(self, conn: Any) -> None:
        self._execute(conn, "BEGIN")

    def _commit(self, conn: Any) -> None:
        self._execute(conn, "COMMIT")

    def _rollback(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            self._execute(conn, "ROLLBACK")

    def _run_transaction(self, conn: Any, statements: Sequence[tuple[str, list[Any]]]) -> None:
        if len(statements) == 1:  # one statement (MERGE, INSERT) is atomic by itself
            sql, params = statements[0]
            self._execute(conn, sql, params)
            return
        super()._run_transaction(conn, statements)

    # ------------------------------------------------------------------------------------ dialect

    def physical_type(self, ltype: LogicalType) -> str:
        return _PHYSICAL[ltype]

    def logical_type(self, physical: str) -> LogicalType:
        base = physical.upper().split("(")[0].strip()
        if base in ("NUMBER", "DECIMAL", "NUMERIC", "INT", "INTEGER", "BIGINT"):
            return LogicalType.BIGINT
        try:
            return _LOGICAL[base]
        except KeyError:
            raise WarehouseError(f"Snowflake type {physical!r} has no logical mapping") from None

    def _container(self, table: TableRef) -> tuple[str, ...]:
        return (self.database, self.schema_prefix + table.schema, table.name)

    def _existing_columns(self, conn: Any, table: TableRef) -> list[Column] | None:
        db, schema, name = self._container(table)
        rows = self._execute(
            conn,
            f"SELECT column_name, data_type, is_nullable, numeric_scale FROM {self.quote(db)}.information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [schema, name],
        ).fetchall()
        if not rows:
            return None
        out = []
        for col, dtype, nullable, scale in rows:
            ltype = self.logical_type(dtype)
            if ltype is LogicalType.BIGINT and scale:  # NUMBER(p, s>0) holds fractions
                ltype = LogicalType.DOUBLE
            out.append(Column(col, ltype, nullable == "YES"))
        return out

    def _ensure_container(self, conn: Any, table: TableRef) -> None:
        db, schema, _ = self._container(table)
        self._execute(conn, f"CREATE SCHEMA IF NOT EXISTS {self.quote(db)}.{self.quote(schema)}")

    def _create_table_sql(self, table: TableRef, cols: Sequence[Column], plan: WritePlan) -> str:
        return super()._create_table_sql(table, cols, plan).replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)

    def _add_column_sql(self, table: TableRef, col: Column) -> str:
        return (
            f"ALTER TABLE {self.fqn(table)} ADD COLUMN IF NOT EXISTS {self.quote(col.name)} "
            f"{self.physical_type(col.type)}"
        )

    # ------------------------------------------------------------------------------------ staging

    def _stage_column(self, index: int, col: Column) -> str:
        return self.quote(f"c{index}")

    def _stage_type(self, ltype: LogicalType) -> str:
        # JSON travels as text and is parsed on the way into the target; the rest keeps its type.
        return "VARCHAR" if ltype is LogicalType.JSON else _PHYSICAL[ltype]

    def _stage(self, conn: Any, table: TableRef, frame: pd.DataFrame, cols: Sequence[Column]) -> str:
        db, schema, _ = self._container(table)
        name = f"_cdp_stage_{uuid.uuid4().hex}"
        stage = f"{self.quote(db)}.{self.quote(schema)}.{self.quote(name)}"
        body = ", ".join(f"{self._stage_column(i, c)} {self._stage_type(c.type)}" for i, c in enumerate(cols))
        self._execute(conn, f"CREATE {self.stage_table_kind} TABLE {stage} ({body})")
        if not frame.empty:
            # Imported here, not at module level: test stand-ins patch the function at call time.
            from snowflake.connector.pandas_tools import write_pandas

            positional = frame.set_axis([f"c{i}" for i in range(len(cols))], axis=1)
            ok, _chunks, rows, output = write_pandas(
                conn, positional, name, database=db, schema=schema, quote_identifiers=True, use_logical_type=True
            )
            if not ok or rows != len(frame):
                raise WarehouseError(f"Staging {len(frame)} rows for {self.fqn(table)} loaded {rows}: {output}")
        return stage

    def _unstage(self, conn: Any, stage: str) -> None:
        with contextlib.suppress(Exception):
            self._execute(conn, f"DROP TABLE IF EXISTS {stage}")

    def _select_expr(self, col: Column, staged: str) -> str:
        if col.type is LogicalType.JSON:
            return f"PARSE_JSON({staged})"
        return f"CAST({staged} AS {self.physical_type(col.type)})"

    def data_statements(self, plan: WritePlan, stage: str, cols: Sequence[Column]) -> list[tuple[str, list[Any]]]:
        if plan.mode is not WriteMode.MERGE:
            return super().data_statements(plan, stage, cols)
        # MERGE updates only the frame's columns; other columns of a matched row keep their values.
        target = self.fqn(plan.table)
        source = ", ".join(
            f"{self._select_expr(c, self._stage_column(i, c))} AS {self.quote(c.name)}" for i, c in enumerate(cols)
        )
        keys = {k.casefold() for k in plan.primary_key}
        on = " AND ".join(f"t.{self.quote(c.name)} = s.{self.quote(c.name)}" for c in cols if c.name.casefold() in keys)
        updates = ", ".join(f"t.{self.quote(c.name)} = s.{self.quote(c.name)}" for c in cols if c.name.casefold() not in keys)
        names = ", ".join(self.quote(c.name) for c in cols)
        values = ", ".join(f"s.{self.quote(c.name)}" for c in cols)
        sql = f"MERGE INTO {target} t USING (SELECT {source} FROM {stage}) s ON {on}"
        if updates:
            sql += f" WHEN MATCHED THEN UPDATE SET {updates}"
        sql += f" WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
        return [(sql, [])]
