"""BigQuery: clients from dagster-gcp's ``BigQueryResource``, frames loaded into a staging table, DML to apply.

How a write goes:

1. schema first (shared algorithm): datasets and tables are created through the API with their schema, and
   tables of time-partitioned assets get BigQuery time partitioning on the partition column (MONTH when the
   asset's partitions span a month or more, DAY otherwise); new frame columns are added with
   ``ALTER TABLE … ADD COLUMN IF NOT EXISTS``;
2. the frame is written as Parquet into a staging table created with its schema first and positional column
   names (``c0``…), with a *resumable* load job (``load_table_from_file(size=None)``); the staging table
   expires after a day in case the process dies before it drops it;
3. the data change is atomic: one ``MERGE`` for ``merge``; otherwise one multi-statement script
   ``BEGIN TRANSACTION; DELETE …; INSERT … SELECT …; COMMIT TRANSACTION;`` (a failing statement rolls the
   whole script back).

Credentials: Application Default Credentials, or a base64 service-account key (``gcp_credentials``, as
dagster-gcp takes it); ``api_endpoint`` points the client at an emulator with anonymous credentials.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import unicodedata
import uuid
from typing import Any, ClassVar, Iterator, Sequence

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dagster import EnvVar, InitResourceContext
from pydantic import Field

from ..env import ConfigError
from .base import SqlWarehouse
from .types import Column, IdentifierError, LogicalType, Slice, TableRef, WarehouseError, WriteMode, WritePlan

_PHYSICAL = {
    LogicalType.BOOLEAN: "BOOL",
    LogicalType.BIGINT: "INT64",
    LogicalType.DOUBLE: "FLOAT64",
    LogicalType.STRING: "STRING",
    LogicalType.TIMESTAMP: "TIMESTAMP",
    LogicalType.DATE: "DATE",
    LogicalType.JSON: "JSON",
}
_LOGICAL = {
    "BOOL": LogicalType.BOOLEAN,
    "BOOLEAN": LogicalType.BOOLEAN,
    "INT64": LogicalType.BIGINT,
    "INTEGER": LogicalType.BIGINT,
    "FLOAT64": LogicalType.DOUBLE,
    "FLOAT": LogicalType.DOUBLE,
    "NUMERIC": LogicalType.DOUBLE,
    "BIGNUMERIC": LogicalType.DOUBLE,
    "STRING": LogicalType.STRING,
    "TIMESTAMP": LogicalType.TIMESTAMP,
    "DATETIME": LogicalType.TIMESTAMP,
    "DATE": LogicalType.DATE,
    "JSON": LogicalType.JSON,
}
_ARROW = {
    LogicalType.BOOLEAN: pa.bool_(),
    LogicalType.BIGINT: pa.int64(),
    LogicalType.DOUBLE: pa.float64(),
    LogicalType.STRING: pa.string(),
    LogicalType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    LogicalType.DATE: pa.date32(),
    LogicalType.JSON: pa.string(),  # JSON travels as text and is parsed with PARSE_JSON on insert
}
# BigQuery's flexible column names still refuse these characters.
_BAD_COLUMN_CHARS = set('!"$()*,./;?@[\\]^`{}~')
_RESERVED_PREFIXES = ("_table_", "_file_", "_partition", "_row_timestamp", "__root__", "_colidentifier")

ENV = {
    "project": "BIGQUERY_PROJECT",
    "location": "BIGQUERY_LOCATION",
    "dataset_prefix": "BIGQUERY_DATASET_PREFIX",
    "credentials": "BIGQUERY_CREDENTIALS_B64",
    "api_endpoint": "BIGQUERY_API_ENDPOINT",
}


class _Result:
    """The DB-API cursor subset the shared algorithm uses, over a finished query job."""

    def __init__(self, rows: list[tuple], names: list[str]):
        self._rows, self.description = rows, [(n,) for n in names]

    def fetchone(self) -> tuple | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple]:
        return self._rows


class BigQueryWarehouse(SqlWarehouse):
    """Tables live in ``<project>.<dataset_prefix><asset key prefix>.<name>``."""

    max_identifier_length: ClassVar[int] = 300  # column names; table names may be longer, datasets 1024
    braze_readable: ClassVar[bool] = True
    placeholder: ClassVar[str] = "?"

    project: str = Field(description="GCP project that holds the datasets and runs the jobs.")
    location: str | None = Field(default=None, description="Dataset and job location, e.g. 'EU' or 'US'.")
    dataset_prefix: str = Field(default="", description="Prepended to every dataset name, e.g. 'cdp_'.")
    gcp_credentials: str | None = Field(
        default=None, description="Base64 service-account key; unset = Application Default Credentials."
    )
    api_endpoint: str | None = Field(
        default=None, description="Other API endpoint (the local emulator); uses anonymous credentials."
    )
    timeout_seconds: float = Field(default=300.0, description="Deadline for one API call or job, retries included.")

    @classmethod
    def from_env(cls) -> BigQueryWarehouse:
        """Settings through ``EnvVar``: a missing one fails when the resource starts, naming the variable."""
        optional = {
            field: EnvVar(ENV[var])
            for field, var in (("location", "location"), ("gcp_credentials", "credentials"), ("api_endpoint", "api_endpoint"))
            if os.environ.get(ENV[var])
        }
        return cls(
            project=EnvVar(ENV["project"]),
            dataset_prefix=os.environ.get(ENV["dataset_prefix"], ""),
            **optional,
        )

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # Fail when the run starts, not at the first write, if no credentials can be found.
        if self.api_endpoint or self.gcp_credentials:
            return
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            google.auth.default()
        except DefaultCredentialsError:
            raise ConfigError(
                "No Google credentials for BigQuery: set GOOGLE_APPLICATION_CREDENTIALS (a key file, or run "
                f"'gcloud auth application-default login'), or {ENV['credentials']} (base64 key), or "
                f"{ENV['api_endpoint']} for an emulator"
            ) from None

    # ------------------------------------------------------------------------------------ connection

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        if self.api_endpoint:
            from google.api_core.client_options import ClientOptions
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import bigquery

            client = bigquery.Client(
                project=self.project,
                location=self.location,
                credentials=AnonymousCredentials(),
                client_options=ClientOptions(api_endpoint=self.api_endpoint),
            )
            try:
                yield client
            finally:
                client.close()
            return
        from dagster_gcp import BigQueryResource

        with BigQueryResource(
            project=self.project, location=self.location, gcp_credentials=self.gcp_credentials
        ).get_client() as client:
            yield client

    def _connect(self) -> Any:  # clients come from ``connection``
        raise NotImplementedError

    @property
    def _retry(self):
        from google.cloud import bigquery

        return bigquery.DEFAULT_RETRY.with_deadline(self.timeout_seconds)

    @contextlib.contextmanager
    def _api(self, what: str) -> Iterator[None]:
        """Turn transport failures into one clear message naming the endpoint setting."""
        from google.api_core import exceptions as gexc
        from requests import exceptions as rexc

        try:
            yield
        except (gexc.RetryError, rexc.ConnectionError, rexc.Timeout, TimeoutError) as exc:
            where = self.api_endpoint or "the BigQuery API"
            raise WarehouseError(
                f"BigQuery unreachable while {what} ({where}, project {self.project!r}) within "
                f"{self.timeout_seconds:.0f}s: {type(exc).__name__}. Check {ENV['api_endpoint']} / network "
                f"and {ENV['project']}."
            ) from None

    def _execute(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> _Result:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(query_parameters=[_param(p) for p in params])
        with self._api("running a query"):
            job = conn.query(sql, job_config=config, retry=self._retry, timeout=self.timeout_seconds)
            result = job.result(retry=self._retry, timeout=self.timeout_seconds)
        names = [f.name for f in result.schema or []]
        return _Result([tuple(r.values()) for r in result], names)

    def _begin(self, conn: Any) -> None:
        pass

    def _commit(self, conn: Any) -> None:
        pass  # every statement or script commits itself

    def _rollback(self, conn: Any) -> None:
        pass  # a failed script has already rolled back its transaction

    def _run_transaction(self, conn: Any, statements: Sequence[tuple[str, list[Any]]]) -> None:
        if len(statements) == 1:  # one DML statement (MERGE, INSERT) is atomic by itself
            self._execute(conn, *statements[0])
            return
        script = "BEGIN TRANSACTION;\n" + "".join(f"{sql};\n" for sql, _ in statements) + "COMMIT TRANSACTION;"
        self._execute(conn, script, [p for _, params in statements for p in params])

    # ------------------------------------------------------------------------------------ dialect

    def quote(self, name: str) -> str:
        if "\x00" in name or "\n" in name:
            raise IdentifierError(f"identifier {name!r} contains a control character")
        return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"

    def physical_type(self, ltype: LogicalType) -> str:
        return _PHYSICAL[ltype]

    def logical_type(self, physical: str) -> LogicalType:
        try:
            return _LOGICAL[physical.upper().split("(")[0].strip()]
        except KeyError:
            raise WarehouseError(f"BigQuery type {physical!r} has no logical mapping") from None

    def _container(self, table: TableRef) -> tuple[str, ...]:
        return (self.project, self.dataset_prefix + table.schema, table.name)

    def _check_table_name(self, table: TableRef) -> None:
        _, dataset, name = self._container(table)
        if not dataset or len(dataset) > 1024 or not all(c.isascii() and (c.isalnum() or c == "_") for c in dataset):
            raise IdentifierError(
                f"BigQuery dataset name {dataset!r} (from asset key prefix {table.schema!r}) may only hold "
                "ASCII letters, digits and underscores, at most 1024 of them"
            )
        if not name or len(name.encode()) > 1024 or any(
            unicodedata.category(c)[0] not in "LMN" and unicodedata.category(c) not in ("Pc", "Pd", "Zs") for c in name
        ):
            raise IdentifierError(
                f"BigQuery table name {name!r} may only hold letters, marks, digits, '_', '-' and spaces "
                "(at most 1024 bytes)"
            )

    def _check_columns(self, cols: Sequence[Column], fqn: str) -> None:
        for c in cols:
            bad = sorted(set(c.name) & _BAD_COLUMN_CHARS)
            if bad:
                raise IdentifierError(f"{fqn}: BigQuery column names cannot contain {''.join(bad)!r}: {c.name!r}")
            if c.name.lower().startswith(_RESERVED_PREFIXES):
                raise IdentifierError(f"{fqn}: column name {c.name!r} uses a prefix BigQuery reserves")

    def _ref(self, table: TableRef) -> str:
        return ".".join(self._container(table))

    def _existing_columns(self, conn: Any, table: TableRef) -> list[Column] | None:
        from google.api_core.exceptions import NotFound

        try:
            with self._api("reading a table's schema"):
                bq_table = conn.get_table(self._ref(table), retry=self._retry, timeout=self.timeout_seconds)
        except NotFound:
            return None
        return [Column(f.name, self.logical_type(f.field_type), f.mode != "REQUIRED") for f in bq_table.schema]

    def _schema(self, cols: Sequence[Column], names: Sequence[str] | None = None):
        from google.cloud import bigquery

        names = names or [c.name for c in cols]
        return [bigquery.SchemaField(n, _PHYSICAL[c.type], mode="NULLABLE") for n, c in zip(names, cols)]

    def _apply_schema(self, conn: Any, plan: WritePlan, cols, existing, additions) -> None:
        from google.cloud import bigquery

        if existing is not None and not additions:
            return
        self._check_columns(cols, self.fqn(plan.table))
        _, dataset, _ = self._container(plan.table)
        with self._api("creating the dataset or table"):
            ds = bigquery.Dataset(f"{self.project}.{dataset}")
            if self.location:  # an explicit null location is an error for some servers
                ds.location = self.location
            conn.create_dataset(ds, exists_ok=True, retry=self._retry, timeout=self.timeout_seconds)
            if existing is None:
                table = bigquery.Table(self._ref(plan.table), schema=self._schema(cols))
                table.time_partitioning = _partitioning(plan, cols)
                conn.create_table(table, exists_ok=True, retry=self._retry, timeout=self.timeout_seconds)
                return
        for col in additions:
            self._execute(conn, self._add_column_sql(plan.table, col))
        self._sync_schema_metadata(conn, plan.table, additions)

    def _sync_schema_metadata(self, conn: Any, table: TableRef, additions: Sequence[Column]) -> None:
        """BigQuery's ALTER updates the table's schema; a server whose metadata lags (the emulator) gets the
        same columns through the tables API, which on BigQuery proper finds nothing left to do."""
        with self._api("updating the table schema"):
            bq_table = conn.get_table(self._ref(table), retry=self._retry, timeout=self.timeout_seconds)
            known = {f.name.casefold() for f in bq_table.schema}
            missing = [c for c in additions if c.name.casefold() not in known]
            if missing:
                bq_table.schema = [*bq_table.schema, *self._schema(missing)]
                conn.update_table(bq_table, ["schema"], retry=self._retry, timeout=self.timeout_seconds)

    def _add_column_sql(self, table: TableRef, col: Column) -> str:
        return f"ALTER TABLE {self.fqn(table)} ADD COLUMN IF NOT EXISTS {self.quote(col.name)} {_PHYSICAL[col.type]}"

    def _slice_predicate(self, s: Slice, qualifier: str = "") -> tuple[str, list[Any]]:
        col = f"{qualifier}{self.quote(s.column)}"
        # Named parameters: unlike positional ones they are also valid inside multi-statement scripts.
        if s.values:
            return f"{col} IN UNNEST(@slice_values)", [("slice_values", list(s.values))]
        return f"{col} >= @slice_start AND {col} < @slice_end", [("slice_start", s.start), ("slice_end", s.end)]

    def _fetch_frame(self, conn: Any, sql: str, params: Sequence[Any]) -> pd.DataFrame:
        result = self._execute(conn, sql, params)
        frame = pd.DataFrame.from_records(result.fetchall(), columns=[d[0] for d in result.description])
        for name in frame.columns:  # the client hands JSON back parsed; the interface returns JSON text
            if frame[name].map(lambda v: isinstance(v, (dict, list))).any():
                frame[name] = frame[name].map(_json_text)
        return frame

    def drop(self, table: TableRef) -> None:
        with self.connection() as conn, self._api("dropping a table"):
            conn.delete_table(self._ref(table), not_found_ok=True, retry=self._retry, timeout=self.timeout_seconds)

    # ------------------------------------------------------------------------------------ staging

    def _stage_column(self, index: int, col: Column) -> str:
        return self.quote(f"c{index}")

    def _stage(self, conn: Any, table: TableRef, frame: pd.DataFrame, cols: Sequence[Column]) -> str:
        from google.cloud import bigquery

        _, dataset, _ = self._container(table)
        ref = f"{self.project}.{dataset}._cdp_stage_{uuid.uuid4().hex}"
        names = [f"c{i}" for i in range(len(cols))]
        stage_cols = [Column(c.name, LogicalType.STRING if c.type is LogicalType.JSON else c.type) for c in cols]
        staging = bigquery.Table(ref, schema=self._schema(stage_cols, names))
        staging.expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
        with self._api("creating the staging table"):
            conn.create_table(staging, retry=self._retry, timeout=self.timeout_seconds)
        if not frame.empty:
            arrow = pa.Table.from_arrays(
                [pa.Array.from_pandas(frame.iloc[:, i], type=_ARROW[c.type]) for i, c in enumerate(cols)], names=names
            )
            buf = io.BytesIO()
            pq.write_table(arrow, buf)
            buf.seek(0)
            config = bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.PARQUET,
                schema=staging.schema,
                write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            )
            with self._api("loading the staging table"):
                # size=None: a resumable upload (multipart uploads are what the emulator refuses).
                job = conn.load_table_from_file(buf, ref, job_config=config, size=None, rewind=True,
                                                timeout=self.timeout_seconds)
                job.result(retry=self._retry, timeout=self.timeout_seconds)
            if job.output_rows is not None and int(job.output_rows) != len(frame):
                raise WarehouseError(f"Staging {len(frame)} rows for {self.fqn(table)} loaded {job.output_rows}")
        return self.fqn_ref(ref)

    def fqn_ref(self, ref: str) -> str:
        return ".".join(self.quote(p) for p in ref.split("."))

    def _unstage(self, conn: Any, stage: str) -> None:
        ref = ".".join(p.strip("`") for p in stage.split("`.`"))
        with contextlib.suppress(Exception):
            conn.delete_table(ref, not_found_ok=True, retry=self._retry, timeout=self.timeout_seconds)

    def _select_expr(self, col: Column, staged: str) -> str:
        if col.type is LogicalType.JSON:
            return f"PARSE_JSON({staged})"
        return f"CAST({staged} AS {_PHYSICAL[col.type]})"

    def data_statements(self, plan: WritePlan, stage: str, cols: Sequence[Column]) -> list[tuple[str, list[Any]]]:
        """One DML statement per write, so each write is atomic without a multi-statement script.

        ``replace`` and ``partition`` are ``MERGE … ON FALSE``: every staged row is inserted and every target row
        of the slice (or of the table) that is "not matched by source" is deleted, in the same statement."""
        if plan.mode is WriteMode.APPEND:
            return super().data_statements(plan, stage, cols)
        target = self.fqn(plan.table)
        source = ", ".join(
            f"{self._select_expr(c, self._stage_column(i, c))} AS {self.quote(c.name)}" for i, c in enumerate(cols)
        )
        names = ", ".join(self.quote(c.name) for c in cols)
        insert = f"WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({', '.join(f'S.{self.quote(c.name)}' for c in cols)})"
        using = f"MERGE {target} T USING (SELECT {source} FROM {stage}) S"
        if plan.mode is WriteMode.REPLACE:
            return [(f"{using} ON FALSE WHEN NOT MATCHED BY SOURCE THEN DELETE {insert}", [])]
        if plan.mode is WriteMode.PARTITION:
            assert plan.slice is not None
            pred, params = self._slice_predicate(plan.slice, qualifier="T.")
            return [(f"{using} ON FALSE WHEN NOT MATCHED BY SOURCE AND {pred} THEN DELETE {insert}", params)]
        keys = {k.casefold() for k in plan.primary_key}
        on = " AND ".join(f"T.{self.quote(c.name)} = S.{self.quote(c.name)}" for c in cols if c.name.casefold() in keys)
        updates = ", ".join(f"{self.quote(c.name)} = S.{self.quote(c.name)}" for c in cols if c.name.casefold() not in keys)
        matched = f" WHEN MATCHED THEN UPDATE SET {updates}" if updates else ""
        return [(f"{using} ON {on}{matched} {insert}", [])]


def _partitioning(plan: WritePlan, cols: Sequence[Column]):
    """Time partitioning for tables written by time-window partitions: MONTH for monthly (or longer) windows."""
    from google.cloud import bigquery

    s = plan.slice
    if plan.mode is not WriteMode.PARTITION or s is None or s.values:
        return None
    ctype = next((c.type for c in cols if c.name == s.column), None)
    if ctype not in (LogicalType.DATE, LogicalType.TIMESTAMP):
        return None
    span = pd.Timestamp(s.end) - pd.Timestamp(s.start)
    kind = bigquery.TimePartitioningType.MONTH if span >= pd.Timedelta(days=28) else bigquery.TimePartitioningType.DAY
    return bigquery.TimePartitioning(type_=kind, field=s.column)


def _param(param: Any):
    """A query parameter from a bare value (positional ``?``) or a ``(name, value)`` pair (``@name``)."""
    from google.cloud import bigquery

    name, value = param if isinstance(param, tuple) else (None, param)
    if isinstance(value, list):
        kinds = {_scalar_type(v) for v in value}
        return bigquery.ArrayQueryParameter(name, kinds.pop() if len(kinds) == 1 else "STRING", value)
    return bigquery.ScalarQueryParameter(name, _scalar_type(value), value)


def _scalar_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        return "TIMESTAMP"
    if isinstance(value, dt.date):
        return "DATE"
    return "STRING"


def _json_text(v: Any) -> Any:
    return orjson.dumps(v).decode() if isinstance(v, (dict, list)) else v
