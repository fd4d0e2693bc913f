"""The Braze Cloud Data Ingestion (CDI) table contract, as data (contract `events-and-braze.md` section D).

Everything Braze-specific that is not a transformation lives here: the sync tables' columns with their
physical type per warehouse (D.2), the identifier kinds and the order in which one is chosen (D.3), the
payload limits (D.4), the warehouses Braze can read (D.1), and the DDL that creates a sync table with Braze's
exact types and NOT NULLs before the first write.

Why the DDL lives here and not in the generic write path: the warehouse layer maps seven logical types to one
physical type per backend (Snowflake TIMESTAMP -> TIMESTAMP_TZ, JSON -> VARIANT) and creates every column
nullable, while Braze documents TIMESTAMP_NTZ(9) and VARCHAR on Snowflake, JSON on BigQuery and NOT NULL on
UPDATED_AT and PAYLOAD. ``ensure_sync_table`` creates the table with those types once; later writes go through
the ordinary ``WarehouseResource.write`` (append), which keeps the existing column types.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Mapping

from dagster import TableColumn, TableColumnConstraints, TableSchema

from ..shared.env import ConfigError
from ..shared.warehouse import LogicalType, SqlWarehouse, TableRef, WarehouseResource

# ------------------------------------------------------------------------------------------ columns

#: Logical type of every Braze sync column on each backend. PAYLOAD is JSON where Braze documents a JSON
#: type (BigQuery) and text where it documents VARCHAR (Snowflake); DuckDB mirrors BigQuery locally.
_PAYLOAD_LOGICAL = {"snowflake": LogicalType.STRING, "bigquery": LogicalType.JSON, "duckdb": LogicalType.JSON}


@dataclass(frozen=True)
class BrazeColumn:
    name: str
    required: bool  # NOT NULL / mode REQUIRED
    physical: Mapping[str, str]  # warehouse kind -> DDL type, exactly as Braze documents it (D.2)
    description: str

    def logical(self, kind: str) -> LogicalType:
        if self.name == "PAYLOAD":
            return _PAYLOAD_LOGICAL[kind]
        return LogicalType.TIMESTAMP if self.name == "UPDATED_AT" else LogicalType.STRING


def _id_column(name: str, description: str) -> BrazeColumn:
    return BrazeColumn(
        name,
        False,
        {"snowflake": "VARCHAR(16777216)", "bigquery": "STRING", "duckdb": "VARCHAR"},
        description,
    )


#: The user-attributes sync table; custom events use the same shape (D.6), one event per row.
SYNC_COLUMNS: tuple[BrazeColumn, ...] = (
    BrazeColumn(
        "UPDATED_AT",
        True,
        {"snowflake": "TIMESTAMP_NTZ(9)", "bigquery": "TIMESTAMP", "duckdb": "TIMESTAMPTZ"},
        "UTC time this row was published; Braze imports rows newer than its last sync (D.5).",
    ),
    _id_column("EXTERNAL_ID", "Braze external id = Segment userId / Intercom external_id."),
    _id_column("ALIAS_NAME", "User alias name (Segment anonymousId), set together with ALIAS_LABEL."),
    _id_column("ALIAS_LABEL", "User alias label, e.g. 'segment_anonymous_id'."),
    _id_column("BRAZE_ID", "Braze's own id; our sources never know it, so it is always NULL."),
    _id_column("EMAIL", "Email, used as the identifier only when no external id or alias is known."),
    _id_column("PHONE", "Phone, used as the identifier only when nothing else is known."),
    BrazeColumn(
        "PAYLOAD",
        True,
        {"snowflake": "VARCHAR(16777216)", "bigquery": "JSON", "duckdb": "JSON"},
        "JSON object in /users/track format: attributes, or one event {name, time, properties}.",
    ),
)
SYNC_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in SYNC_COLUMNS)
#: Warehouses whose Braze DDL is known (D.2). Others refuse Braze clearly (see require_braze_readable).
DOCUMENTED_KINDS = frozenset(SYNC_COLUMNS[0].physical)


class IdKind(str, Enum):
    """Identifier kinds a row can use (D.3), in the order one is chosen when a user has several."""

    EXTERNAL_ID = "external_id"  # stable, creates users
    ALIAS = "alias"  # ALIAS_NAME + ALIAS_LABEL together; creates alias-only users (anonymous visitors)
    EMAIL = "email"  # matches the most recently updated profile with that email
    PHONE = "phone"  # same, by phone; email wins over phone in Braze too


ID_ORDER: tuple[IdKind, ...] = (IdKind.EXTERNAL_ID, IdKind.ALIAS, IdKind.EMAIL, IdKind.PHONE)
#: Identifier columns of a sync row; a valid row sets exactly one kind (alias = both alias columns).
ID_COLUMNS = ("EXTERNAL_ID", "ALIAS_NAME", "ALIAS_LABEL", "BRAZE_ID", "EMAIL", "PHONE")
SEGMENT_ANONYMOUS_LABEL = "segment_anonymous_id"

#: Keys that name an identifier in /users/track terms; they never go inside PAYLOAD (D.4).
PAYLOAD_FORBIDDEN_KEYS = frozenset({"external_id", "braze_id", "user_alias", "email", "phone"})

MAX_ATTRIBUTES = 250  # per row; an array counts as one (D.4)
MAX_ROW_BYTES = 1_000_000  # "1 MB per row" (D.4); the decimal MB is the conservative reading


# ------------------------------------------------------------------------------------------ schema


def column_schema(kind: str) -> TableSchema:
    """The contract's schema for ``kind``, with the physical types Braze documents (UI and metadata)."""
    return TableSchema(
        columns=[
            TableColumn(
                name=c.name,
                type=c.physical.get(kind, c.logical(kind if kind in DOCUMENTED_KINDS else "duckdb").value),
                description=c.description,
                constraints=TableColumnConstraints(nullable=not c.required),
            )
            for c in SYNC_COLUMNS
        ]
    )


# ------------------------------------------------------------------------------------------ warehouses


class BrazeTargetError(ConfigError):
    """The configured warehouse cannot be a Braze CDI source."""


def require_braze_readable(wh: WarehouseResource) -> None:
    """Refuse, with a message that says what to do, to publish Braze tables where Braze cannot read them."""
    if type(wh).braze_readable:
        return
    raise BrazeTargetError(
        f"Braze Cloud Data Ingestion cannot read {wh.kind!r} (CDP_WAREHOUSE={wh.kind}): Braze reads only "
        "Snowflake, BigQuery, Redshift, Databricks, Microsoft Fabric or files in S3. Publish the braze/* "
        "sync tables from a Braze-readable warehouse (CDP_WAREHOUSE=snowflake or bigquery; duckdb for local "
        "runs), or mirror them there; see cdp_assets/braze/README.md."
    )


def create_table_sql(wh: SqlWarehouse, table: TableRef) -> str:
    """Braze's DDL for ``table`` on ``wh``: exact physical types and NOT NULL on required columns."""
    kind = wh.kind
    if kind not in DOCUMENTED_KINDS:
        raise BrazeTargetError(f"no Braze sync-table DDL is defined for warehouse {kind!r}")
    body = ", ".join(
        f"{wh.quote(c.name)} {c.physical[kind]}{' NOT NULL' if c.required else ''}" for c in SYNC_COLUMNS
    )
    return f"CREATE TABLE IF NOT EXISTS {wh.fqn(table)} ({body})"


def ensure_sync_table(wh: WarehouseResource, table: TableRef) -> bool:
    """Create the sync table with Braze's types and NOT NULLs if it does not exist yet. Returns True if it was
    created.

    This is the local stand-in for a ``WarehouseResource.create_table(table, columns)`` hook (see the README):
    SQL backends get ``create_table_sql`` over their own connection; BigQuery gets its tables API, which is
    how the warehouse layer creates BigQuery tables too (REQUIRED = NOT NULL).
    """
    require_braze_readable(wh)
    if wh.columns(table) is not None:
        return False
    if not isinstance(wh, SqlWarehouse):
        raise BrazeTargetError(
            f"{type(wh).__name__} is not a SqlWarehouse; it needs a create_table hook to create Braze tables"
        )
    with wh.connection() as conn:
        if wh.kind == "bigquery":
            _create_bigquery(wh, conn, table)
        else:
            wh._ensure_container(conn, table)
            wh._execute(conn, create_table_sql(wh, table))
            wh._commit(conn)
    return True


def _create_bigquery(wh: SqlWarehouse, conn, table: TableRef) -> None:
    from google.cloud import bigquery

    project, dataset, name = wh._container(table)
    conn.create_dataset(bigquery.Dataset(f"{project}.{dataset}"), exists_ok=True)
    schema = [
        bigquery.SchemaField(c.name, c.physical["bigquery"], mode="REQUIRED" if c.required else "NULLABLE")
        for c in SYNC_COLUMNS
    ]
    conn.create_table(bigquery.Table(f"{project}.{dataset}.{name}", schema=schema), exists_ok=True)


def contract_violations(wh: WarehouseResource, table: TableRef) -> list[str]:
    """What is wrong with the table's columns (names, logical types, nullability) versus the contract."""
    cols = wh.columns(table)
    if cols is None:
        return [f"{wh.fqn(table)} does not exist"]
    problems: list[str] = []
    actual = [c.name for c in cols]
    if actual != list(SYNC_COLUMN_NAMES):
        if sorted(n.upper() for n in actual) == sorted(SYNC_COLUMN_NAMES) and actual != [
            n.upper() for n in actual
        ]:
            problems.append(f"column names must be upper case exactly as Braze spells them: {actual}")
        else:
            extra = [n for n in actual if n not in SYNC_COLUMN_NAMES]
            missing = [n for n in SYNC_COLUMN_NAMES if n not in actual]
            problems.append(f"columns differ from the contract: missing {missing}, extra {extra}")
    kind = wh.kind if wh.kind in DOCUMENTED_KINDS else "duckdb"
    by_name = {c.name: c for c in cols}
    for spec in SYNC_COLUMNS:
        col = by_name.get(spec.name)
        if col is None:
            continue
        if col.type is not spec.logical(kind):
            problems.append(f"{spec.name} is {col.type.value}, the contract says {spec.logical(kind).value}")
        if spec.required and col.nullable:
            problems.append(f"{spec.name} must be NOT NULL")
    return problems
