"""Warehouse-neutral vocabulary: write modes, table references, logical column types, frame preparation.

Every backend maps the seven logical types below to its own physical types. Frames are normalised once
(`prepare_frame`) so each backend receives the same shapes: UTC timestamps, JSON already serialised to text,
nullable integers as pandas ``Int64``; Arrow-backed columns (``pd.ArrowDtype``) that already have a type's
Arrow form (text, int64, bool, float64, UTC timestamp) are passed through as they are.
"""

from __future__ import annotations

import datetime as dt
import decimal
import unicodedata
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa


class WriteMode(str, Enum):
    """How an asset's DataFrame lands in its table. Assets declare it in metadata ``write_mode``."""

    REPLACE = "replace"  # the table becomes exactly the frame (old extra columns kept, as NULL)
    PARTITION = "partition"  # only the partition's slice of ``partition_column`` is overwritten
    MERGE = "merge"  # upsert on ``primary_key``; last row of the frame wins within a key
    APPEND = "append"  # insert every row


class LogicalType(str, Enum):
    BOOLEAN = "boolean"
    BIGINT = "bigint"
    DOUBLE = "double"
    STRING = "string"
    TIMESTAMP = "timestamp"  # always UTC, tz-aware
    DATE = "date"
    JSON = "json"  # stored as the backend's JSON type where it has one, text otherwise


#: Widening a column is allowed (the value converts without loss); anything else is a type change error.
_COMPATIBLE = {
    (LogicalType.BIGINT, LogicalType.DOUBLE),  # table DOUBLE, frame BIGINT: ints fit
    (LogicalType.STRING, LogicalType.JSON),  # table JSON, frame text that is valid JSON
    (LogicalType.JSON, LogicalType.STRING),  # table text, frame JSON text
}


def compatible(frame_type: LogicalType, table_type: LogicalType) -> bool:
    return frame_type == table_type or (frame_type, table_type) in _COMPATIBLE


@dataclass(frozen=True)
class TableRef:
    """A table by its logical coordinates: ``schema`` (the asset key prefix) and ``name``."""

    schema: str
    name: str

    @classmethod
    def for_asset_key(cls, path: Sequence[str], default_schema: str = "main") -> TableRef:
        if len(path) == 1:
            return cls(default_schema, path[0])
        return cls(path[0], "__".join(path[1:]))


@dataclass(frozen=True)
class Column:
    name: str
    type: LogicalType
    nullable: bool = True


@dataclass(frozen=True)
class Slice:
    """The part of a table a partitioned write owns: ``start <= column < end``, or ``column IN values``."""

    column: str
    start: Any = None
    end: Any = None
    values: tuple = ()

    def __post_init__(self):
        if not self.values and (self.start is None or self.end is None):
            raise ValueError(f"Slice on {self.column!r} needs either values or both start and end")

    def contains(self, series: pd.Series) -> pd.Series:
        if self.values:
            return series.isin(list(self.values))
        return (series >= self.start) & (series < self.end)


@dataclass(frozen=True)
class WritePlan:
    table: TableRef
    mode: WriteMode = WriteMode.REPLACE
    primary_key: tuple[str, ...] = ()
    slice: Slice | None = None
    #: logical types the asset declares for some columns (its definition's column schema): they decide the type
    #: of a column whose values cannot tell (all NULL, or JSON text), so a table's types never depend on which
    #: rows happen to come first; an existing table's own types take precedence
    column_types: Mapping[str, LogicalType] = field(default_factory=dict)
    #: JSON columns whose text the caller produced with a JSON encoder (Arrow-backed text columns only): their
    #: text is not parsed again to check it (the warehouse's own JSON cast still validates where it has one)
    encoded_json: frozenset[str] = frozenset()

    def __post_init__(self):
        if self.mode is WriteMode.MERGE and not self.primary_key:
            raise WarehouseError(f"write_mode 'merge' on {self.table.schema}.{self.table.name} needs a primary_key")
        if self.mode is WriteMode.PARTITION and self.slice is None:
            raise WarehouseError(
                f"write_mode 'partition' on {self.table.schema}.{self.table.name} needs a partition "
                "(run it for a partition key, and set partition_column)"
            )


@dataclass
class WriteResult:
    fqn: str
    mode: WriteMode
    rows_in_frame: int
    row_count: int  # rows in the table after the write
    columns: list[Column]
    added_columns: list[str] = field(default_factory=list)
    skipped_reason: str | None = None


class WarehouseError(RuntimeError):
    """A write or read could not be done; the message names the table (and column) concerned."""


class SchemaChangeError(WarehouseError):
    def __init__(self, table: str, column: str, old: LogicalType | str, new: LogicalType | str):
        self.table, self.column, self.old, self.new = table, column, old, new
        old_s = getattr(old, "value", old)
        new_s = getattr(new, "value", new)
        super().__init__(
            f"Type change refused on {table}.{column}: the table has {old_s}, the new data has {new_s}. "
            "Only additive changes are applied automatically; migrate the column by hand (or drop the table) "
            "if the change is intended."
        )


class IdentifierError(WarehouseError):
    pass


# ---------------------------------------------------------------------------------------------- frames


def _infer_object(values: pd.Series) -> LogicalType:
    # The types of the first 1000 non-null values decide. Look at a prefix first: dropping the NULLs of a whole
    # large column to keep 1000 values cost more than converting it.
    sample = values.iloc[:2000].dropna()
    if len(sample) < 1000 and len(values) > 2000:
        sample = values.dropna()
    if sample.empty:
        return LogicalType.STRING
    kinds = {type(v) for v in sample.iloc[:1000]}
    if kinds <= {dict, list, tuple}:
        return LogicalType.JSON
    if kinds <= {bool, np.bool_}:
        return LogicalType.BOOLEAN
    if kinds <= {int, np.int64, np.int32}:
        return LogicalType.BIGINT
    if kinds <= {float, int, np.float64, decimal.Decimal}:
        return LogicalType.DOUBLE
    if kinds <= {dt.date}:
        return LogicalType.DATE
    if kinds <= {dt.datetime, pd.Timestamp}:
        return LogicalType.TIMESTAMP
    if any(k in (dict, list, tuple) for k in kinds):
        return LogicalType.JSON  # mixed scalars and containers: keep everything as JSON
    return LogicalType.STRING


def infer_type(series: pd.Series) -> LogicalType:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return LogicalType.BOOLEAN
    if pd.api.types.is_integer_dtype(dtype):
        return LogicalType.BIGINT
    if pd.api.types.is_float_dtype(dtype):
        return LogicalType.DOUBLE
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return LogicalType.TIMESTAMP
    if isinstance(dtype, pd.CategoricalDtype):
        return LogicalType.STRING
    return _infer_object(series)


#: How the warehouse layer encodes JSON values to text (``orjson.dumps(v, option=JSON_ENCODE_OPTION,
#: default=str)``); callers that encode their own JSON columns (``WritePlan.encoded_json``) use the same.
JSON_ENCODE_OPTION = orjson.OPT_NON_STR_KEYS


def _json_texts(s: pd.Series) -> pd.Series:
    """``s.map(_json_text, na_action="ignore")``, with dicts and lists serialised inline (one orjson call a
    value instead of a Python function call and three type checks: the bulk of a JSON column's cost). Text is
    checked inline too (valid JSON text is kept, other text becomes a JSON string, as in ``_json_text``):
    callers that serialise their objects before the frame hand over text only."""
    values = s.to_numpy(dtype=object)
    isna = pd.isna(values)
    dumps, loads, opt, text = orjson.dumps, orjson.loads, JSON_ENCODE_OPTION, _json_text
    out = np.empty(len(values), dtype=object)
    for i, (v, na) in enumerate(zip(values.tolist(), isna.tolist())):
        if na:
            out[i] = v
        elif type(v) is str:
            try:
                loads(v)
                out[i] = v
            except orjson.JSONDecodeError:
                out[i] = dumps(v).decode()
        elif type(v) is dict or type(v) is list:
            out[i] = dumps(v, option=opt, default=str).decode()
        else:
            out[i] = text(v)
    return pd.Series(out, index=s.index, dtype=object)


def _json_text(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, str):
        return v if _is_json_text(v) else orjson.dumps(v).decode()
    return orjson.dumps(v, option=JSON_ENCODE_OPTION, default=str).decode()


def _is_json_text(v: str) -> bool:
    try:
        orjson.loads(v)
        return True
    except orjson.JSONDecodeError:
        return False


def prepare_frame(df: pd.DataFrame, declared: dict[str, LogicalType] | None = None,
                  encoded_json: frozenset[str] = frozenset()) -> tuple[pd.DataFrame, list[Column]]:
    """Normalise a frame for writing and describe its columns.

    ``declared`` forces a logical type for some columns (for example when the table already has a type and
    the frame's column is all-NULL). A declared column that is already Arrow-backed in its type's staged form
    (see ``_arrow_has``; for JSON, text named in ``encoded_json``) is taken as it is, without inference or
    conversion: a loader that builds its columns typed pays nothing here. The input frame is not modified.
    """
    declared = declared or {}
    out = {}
    columns: list[Column] = []
    for name in df.columns:
        if not isinstance(name, str):
            raise IdentifierError(f"Column names must be strings, got {name!r} ({type(name).__name__})")
        s = df[name]
        want = declared.get(name)
        if want is not None and (_arrow_has(s.dtype, want) or (
                want is LogicalType.JSON and name in encoded_json and _arrow_has(s.dtype, LogicalType.STRING))):
            out[name] = s.reset_index(drop=True)
            columns.append(Column(name, want, nullable=True))
            continue
        ltype = infer_type(s)
        if name in declared and (s.isna().all() or (ltype, declared[name]) == (LogicalType.STRING, LogicalType.JSON)):
            ltype = declared[name]  # an all-NULL column (or JSON text) takes the table's type
        out[name] = _convert(s, ltype, name)
        columns.append(Column(name, ltype, nullable=True))
    prepared = pd.DataFrame(out, index=pd.RangeIndex(len(df)))
    return prepared, columns


def _arrow_has(dtype: Any, ltype: LogicalType) -> bool:
    """An Arrow-backed column (``pd.ArrowDtype``) already in ``ltype``'s Arrow form (text, int64, bool, float64,
    UTC timestamp), which DuckDB scans in place. JSON is never assumed (its text is checked), nor dates."""
    if not isinstance(dtype, pd.ArrowDtype):
        return False
    t = dtype.pyarrow_dtype
    if ltype is LogicalType.STRING:
        return pa.types.is_string(t) or pa.types.is_large_string(t)
    if ltype is LogicalType.TIMESTAMP:
        return pa.types.is_timestamp(t) and t.tz in ("UTC", "+00:00", "Etc/UTC")
    return {LogicalType.BIGINT: pa.types.is_int64, LogicalType.BOOLEAN: pa.types.is_boolean,
            LogicalType.DOUBLE: pa.types.is_float64}.get(ltype, _never)(t)


def _never(_: Any) -> bool:
    return False


def _convert(s: pd.Series, ltype: LogicalType, name: str) -> pd.Series:
    s = s.reset_index(drop=True)
    if _arrow_has(s.dtype, ltype):
        return s  # already in the staged form: no conversion to Python objects and back
    try:
        if ltype is LogicalType.TIMESTAMP:
            if pd.api.types.is_datetime64_any_dtype(s.dtype):
                return s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
            return pd.to_datetime(s, utc=True, format="mixed")
        if ltype is LogicalType.BIGINT:
            return s.astype("Int64")
        if ltype is LogicalType.DOUBLE:
            return s.astype("float64")
        if ltype is LogicalType.BOOLEAN:
            return s.astype("boolean")
        if ltype is LogicalType.JSON:
            return _json_texts(s)
        if ltype is LogicalType.DATE:
            return pd.to_datetime(s).dt.date.astype(object).where(s.notna(), None)
        if ltype is LogicalType.STRING:
            if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
                return s.astype(object).where(s.notna(), None)
            return s.astype(str).where(s.notna(), None)
    except (ValueError, TypeError) as exc:
        raise WarehouseError(f"Column {name!r} cannot be written as {ltype.value}: {exc}") from exc
    return s


def check_column_names(names: Iterable[str], max_length: int, where: str) -> None:
    """Reject names no warehouse can hold, with a message naming the offender."""
    seen: dict[str, str] = {}
    for name in names:
        if not name or not name.strip():
            raise IdentifierError(f"{where}: empty column name")
        if "\x00" in name:
            raise IdentifierError(f"{where}: column name {name!r} contains a NUL character")
        length = len(unicodedata.normalize("NFD", name))
        if length > max_length:
            raise IdentifierError(
                f"{where}: column name {name[:40]!r}… is {length} characters; this warehouse allows {max_length}"
            )
        folded = name.casefold()
        if folded in seen:
            raise IdentifierError(
                f"{where}: columns {seen[folded]!r} and {name!r} differ only in case; warehouses resolve "
                "names case-insensitively, rename one of them"
            )
        seen[folded] = name


def dedupe_last(df: pd.DataFrame, key: Sequence[str]) -> pd.DataFrame:
    """Keep the last row per key (a merge's 'last write wins' within one frame)."""
    if not key or df.empty:
        return df
    return df.drop_duplicates(subset=list(key), keep="last").reset_index(drop=True)
