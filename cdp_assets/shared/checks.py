"""Asset checks generated from asset metadata, for every warehouse table declaring a primary key.

Every asset built with ``table_metadata(write_mode, primary_key, ...)`` tells the platform what its table's
key is; these checks hold the table to it after each materialization:

* ``primary_key_unique``   (ERROR): no key value appears on two rows;
* ``primary_key_not_null`` (ERROR): no key column is NULL;
* ``row_count_shrink``     (WARN, full-refresh tables only): a ``replace`` that lost more than ``max_shrink``
  (default half) of the rows of the previous materialization of the same partition, the classic sign of an
  API that answered with a partial list.

The key checks count violations *in the warehouse* with two aggregate queries, so a 100-million-row table is
checked without moving it; only a handful of offending keys are fetched, as examples for the UI.

One ``multi_asset_check`` per asset group (``segment_table_checks`` ...) keeps the cost to one extra step per
group in a run rather than one per table; it is subsettable, so a run checks exactly the tables it wrote.
The checks are non-blocking: a group's check step runs after that group's tables, and blocking would make
downstream tables wait for (or cycle through) a whole group's checks.
"""

# No `from __future__ import annotations`: Dagster inspects the check function's annotations at runtime.
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    MetadataValue,
    multi_asset_check,
)

from .warehouse import SqlWarehouse, TableRef, WarehouseResource, WriteMode
from .warehouse.io_manager import PRIMARY_KEY, WRITE_MODE

PK_UNIQUE = "primary_key_unique"
PK_NOT_NULL = "primary_key_not_null"
ROW_COUNT_SHRINK = "row_count_shrink"

#: Definition metadata an asset may set to change how much a full refresh may shrink before it warns.
MAX_SHRINK = "cdp/max_shrink"
DEFAULT_MAX_SHRINK = 0.5
ROW_COUNT = "dagster/row_count"
SAMPLE_SIZE = 5


@dataclass(frozen=True)
class CheckedTable:
    """A warehouse table asset as the checks see it: key, primary key, write mode, group."""

    key: AssetKey
    primary_key: tuple[str, ...]
    write_mode: WriteMode
    group: str
    max_shrink: float = DEFAULT_MAX_SHRINK
    #: checks the asset already defines itself; they are not generated again
    own_checks: frozenset[str] = frozenset()

    @property
    def table(self) -> TableRef:
        return TableRef.for_asset_key(self.key.path)

    def check_names(self) -> list[str]:
        names = [PK_UNIQUE, PK_NOT_NULL]
        if self.write_mode is WriteMode.REPLACE:
            names.append(ROW_COUNT_SHRINK)
        return [n for n in names if n not in self.own_checks]


def _raw(value: Any) -> Any:
    """Definition metadata may arrive raw or wrapped in a MetadataValue, depending on how it was built."""
    return getattr(value, "value", value)


def checked_table(key: AssetKey, metadata: Mapping[str, Any], group: str | None) -> CheckedTable | None:
    """The table to check for an asset's definition metadata, or None if it declares no primary key."""
    pk = _raw(metadata.get(PRIMARY_KEY)) or ()
    if isinstance(pk, str):
        pk = (pk,)
    if not pk:
        return None
    mode = WriteMode(_raw(metadata.get(WRITE_MODE)) or WriteMode.REPLACE.value)
    max_shrink = float(_raw(metadata.get(MAX_SHRINK)) or DEFAULT_MAX_SHRINK)
    return CheckedTable(key, tuple(pk), mode, group or "default", max_shrink)


# ------------------------------------------------------------------------------------------ key violations


@dataclass(frozen=True)
class KeyViolations:
    null_rows: int  # rows where any key column is NULL
    duplicate_keys: int  # distinct (non-NULL) key values that appear more than once
    duplicate_rows: int  # rows carrying those keys
    examples: list[dict[str, Any]]  # a few duplicated keys with their row counts


def key_violations(
    warehouse: WarehouseResource, table: TableRef, primary_key: Sequence[str]
) -> KeyViolations:
    """Count NULL and duplicated primary keys of ``table``: in SQL where the warehouse speaks it, else from a
    read of the key columns only."""
    if isinstance(warehouse, SqlWarehouse):
        return _sql_key_violations(warehouse, table, primary_key)
    return frame_key_violations(warehouse.read(table, columns=list(primary_key)), primary_key)


def _sql_key_violations(wh: SqlWarehouse, table: TableRef, primary_key: Sequence[str]) -> KeyViolations:
    cols = [wh.quote(c) for c in primary_key]
    target = wh.fqn(table)
    any_null = " OR ".join(f"{c} IS NULL" for c in cols)
    none_null = " AND ".join(f"{c} IS NOT NULL" for c in cols)
    keys = ", ".join(cols)
    groups = (
        f"SELECT {keys}, COUNT(*) AS n FROM {target} WHERE {none_null} GROUP BY {keys} HAVING COUNT(*) > 1"
    )
    # Portable SQL only (DuckDB, Snowflake, BigQuery, Teradata): derived tables with an alias, no LIMIT/TOP.
    # ``_execute`` is the warehouse's own statement hook (its cursor quirks included), as in row_count().
    with wh.connection() as conn:
        (null_rows,) = wh._execute(conn, f"SELECT COUNT(*) FROM {target} WHERE {any_null}").fetchone()
        dup_keys, dup_rows = wh._execute(conn, f"SELECT COUNT(*), SUM(d.n) FROM ({groups}) d").fetchone()
        examples = (
            _first_rows(wh._execute(conn, f"{groups} ORDER BY n DESC, {keys}"), SAMPLE_SIZE)
            if dup_keys
            else []
        )
    return KeyViolations(
        int(null_rows or 0),
        int(dup_keys or 0),
        int(dup_rows or 0),
        [
            {**{k: _jsonable(v) for k, v in zip(primary_key, row[:-1], strict=True)}, "rows": int(row[-1])}
            for row in examples
        ],
    )


def _first_rows(cursor: Any, n: int) -> list[tuple]:
    fetchmany = getattr(cursor, "fetchmany", None)  # some warehouses hand back fully fetched results
    return list(fetchmany(n)) if fetchmany else list(cursor.fetchall()[:n])


def frame_key_violations(frame: pd.DataFrame, primary_key: Sequence[str]) -> KeyViolations:
    """The same counts over a DataFrame of the key columns (warehouses without a SQL connection)."""
    pk = list(primary_key)
    null_mask = frame[pk].isna().any(axis=1)
    counts = frame.loc[~null_mask].groupby(pk, dropna=False).size()
    dups = counts[counts > 1]
    dups = dups.sort_index().sort_values(ascending=False, kind="stable")  # like the SQL: most rows, then key
    examples = [
        {**dict(zip(pk, key if isinstance(key, tuple) else (key,), strict=True)), "rows": int(n)}
        for key, n in dups.head(SAMPLE_SIZE).items()
    ]
    return KeyViolations(
        int(null_mask.sum()),
        len(dups),
        int(dups.sum()),
        [{k: _jsonable(v) for k, v in e.items()} for e in examples],
    )


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def key_check_results(t: CheckedTable, v: KeyViolations, fqn: str) -> dict[str, AssetCheckResult]:
    pk = MetadataValue.json(list(t.primary_key))
    return {
        PK_UNIQUE: AssetCheckResult(
            asset_key=t.key,
            check_name=PK_UNIQUE,
            passed=v.duplicate_keys == 0,
            description=None
            if v.duplicate_keys == 0
            else (f"{v.duplicate_keys} key value(s) of {fqn} appear on {v.duplicate_rows} rows"),
            metadata={
                "primary_key": pk,
                "duplicate_keys": v.duplicate_keys,
                "duplicate_rows": v.duplicate_rows,
                "examples": MetadataValue.json(v.examples),
                "table": MetadataValue.text(fqn),
            },
        ),
        PK_NOT_NULL: AssetCheckResult(
            asset_key=t.key,
            check_name=PK_NOT_NULL,
            passed=v.null_rows == 0,
            description=None if v.null_rows == 0 else f"{v.null_rows} row(s) of {fqn} have a NULL key column",
            metadata={"primary_key": pk, "null_key_rows": v.null_rows, "table": MetadataValue.text(fqn)},
        ),
    }


# ------------------------------------------------------------------------------------------ row-count shrink


def _row_count(record: Any) -> int | None:
    mat = record.asset_materialization
    value = mat.metadata.get(ROW_COUNT) if mat else None
    return None if value is None else int(_raw(value))


def shrink_check_result(instance: DagsterInstance, t: CheckedTable) -> AssetCheckResult:
    """Compare the latest materialization's row count with the previous one of the same partition."""
    latest = instance.fetch_materializations(t.key, limit=1).records
    if not latest:
        return _shrink_result(t, True, "no materialization yet")
    partition = latest[0].partition_key
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=t.key, asset_partitions=[partition] if partition else None), limit=2
    ).records
    current = _row_count(records[0])
    previous = _row_count(records[1]) if len(records) > 1 else None
    if current is None or previous is None:
        return _shrink_result(t, True, "no previous row count to compare with", current=current)
    floor = previous * (1 - t.max_shrink)
    passed = current >= floor
    text = (
        f"{current:,} rows, previously {previous:,}"
        if passed
        else f"full refresh shrank from {previous:,} to {current:,} rows (more than {t.max_shrink:.0%} lost)"
    )
    return _shrink_result(t, passed, text, current=current, previous=previous)


def _shrink_result(t: CheckedTable, passed: bool, text: str, **counts: int | None) -> AssetCheckResult:
    meta: dict[str, Any] = {k: v for k, v in counts.items() if v is not None}
    meta["max_shrink"] = MetadataValue.float(t.max_shrink)
    return AssetCheckResult(
        asset_key=t.key,
        check_name=ROW_COUNT_SHRINK,
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        description=text,
        metadata=meta,
    )


# ------------------------------------------------------------------------------------------ definitions


def build_table_checks(tables: Iterable[CheckedTable], name: str) -> AssetChecksDefinition:
    """One subsettable multi-asset check evaluating every generated check of ``tables``."""
    by_key = {t.key: t for t in tables}
    specs = [
        AssetCheckSpec(
            check, asset=t.key, description=_DESCRIPTIONS[check].format(pk=", ".join(t.primary_key))
        )
        for t in by_key.values()
        for check in t.check_names()
    ]

    @multi_asset_check(
        specs=specs,
        name=name,
        can_subset=True,
        description="Primary-key and row-count checks generated from table metadata (shared/checks.py).",
    )
    def _table_checks(context: AssetCheckExecutionContext, warehouse: WarehouseResource):
        selected = context.selected_asset_check_keys
        for key in sorted({k.asset_key for k in selected}, key=lambda k: k.to_user_string()):
            t = by_key[key]
            wanted = [c for c in t.check_names() if AssetCheckKey(key, c) in selected]
            if PK_UNIQUE in wanted or PK_NOT_NULL in wanted:
                fqn = warehouse.fqn(t.table)
                if warehouse.columns(t.table) is None:
                    for check in (c for c in wanted if c != ROW_COUNT_SHRINK):
                        yield AssetCheckResult(
                            asset_key=key,
                            check_name=check,
                            passed=False,
                            description=f"{fqn} does not exist: the asset wrote nothing yet",
                        )
                else:
                    results = key_check_results(t, key_violations(warehouse, t.table, t.primary_key), fqn)
                    yield from (results[c] for c in wanted if c in results)
            if ROW_COUNT_SHRINK in wanted:
                yield shrink_check_result(context.instance, t)

    return _table_checks


_DESCRIPTIONS = {
    PK_UNIQUE: "No two rows share a primary key ({pk}).",
    PK_NOT_NULL: "No primary-key column ({pk}) is NULL.",
    ROW_COUNT_SHRINK: "Warns when a full refresh loses a large share of the previous materialization's rows.",
}
