"""The eight Intercom collections as data: where they come from, how they page, replicate and land.

One row per collection (contract ``intercom.md`` §7). The assets, the frames and the checks are generated
from these rows; adding a full-refresh collection is one row here and, at most, one simulator route.
Columns are declared (name, JSON path, type) so every table has a stable, typed schema even when a page
has only NULLs in a column.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import Any, Callable, Iterable, Sequence

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..shared.warehouse import JSON_ENCODE_OPTION, Column, LogicalType, WriteMode


class Paging(str, Enum):
    CURSOR = "cursor"  # pages.next.starting_after (lists: query; searches: body)
    SCROLL = "scroll"  # scroll_param; one open scroll per app
    NONE = "none"  # one response
    PARENT = "parent"  # inside the parent's detail response


class Replication(str, Enum):
    INCREMENTAL_SEARCH = "incremental_search"  # search on updated_at from cursor - lookback, merge on id
    FULL_SCROLL = "full_scroll"  # read everything through the scroll, replace
    FULL = "full"  # read everything, replace
    CHILD = "child"  # re-fetched with each changed parent, upserted


class Kind(str, Enum):
    STR = "str"
    INT = "int"
    BOOL = "bool"
    TS = "ts"  # unix seconds -> UTC timestamp
    JSON = "json"

    @property
    def logical_type(self) -> LogicalType:
        return _LOGICAL[self]


_LOGICAL = {Kind.STR: LogicalType.STRING, Kind.INT: LogicalType.BIGINT, Kind.BOOL: LogicalType.BOOLEAN,
            Kind.TS: LogicalType.TIMESTAMP, Kind.JSON: LogicalType.JSON}


@dataclass(frozen=True)
class Col:
    name: str
    kind: Kind = Kind.STR
    path: str | None = None  # dotted JSON path; defaults to the column name

    def get(self, record: dict) -> Any:
        path = self.path or self.name
        if "." not in path:
            return record.get(path)
        value: Any = record
        for part in path.split("."):
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value


S, I, B, T, J = Kind.STR, Kind.INT, Kind.BOOL, Kind.TS, Kind.JSON

#: Columns every soft-deletable table carries (TABLES.md: deleted_at NULL unless the record vanished upstream).
DELETION = (Col("deleted_at", T), Col("deleted_reason", S))


@dataclass(frozen=True)
class Collection:
    name: str
    description: str
    endpoint: str  # the bulk read, "METHOD /path"
    records_key: str  # JSON key holding the records
    primary_key: tuple[str, ...]
    paging: Paging
    replication: Replication
    columns: tuple[Col, ...]
    search_endpoint: str | None = None  # incremental reads
    lookback_seconds: int = 0  # default re-read window before the stored cursor
    pool: str = "intercom_api"

    @property
    def write_mode(self) -> WriteMode:
        return WriteMode.REPLACE if self.replication in (Replication.FULL, Replication.FULL_SCROLL) else WriteMode.MERGE

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def table_columns(self) -> list[Column]:
        """The warehouse table's columns, as declared in the asset definition's ``dagster/column_schema``."""
        return [Column(c.name, c.kind.logical_type) for c in self.columns]

    @property
    def column_types(self) -> dict[str, LogicalType]:
        """For ``WritePlan.column_types``: a batch whose JSON column is all NULL still makes a JSON column."""
        return {c.name: c.kind.logical_type for c in self.columns}

    @property
    def encoded_json(self) -> frozenset[str]:
        """For ``WritePlan.encoded_json``: the JSON columns, whose every value ``extend_columns`` encodes."""
        return frozenset(c.name for c in self.columns if c.kind is Kind.JSON)

    @property
    def column_sources(self) -> dict[str, str]:
        """Where a column is read from when that is not the API field of the same name (column descriptions)."""
        return {c.name: f"API field `{c.path}`" for c in self.columns if c.path and c.path != c.name}

    def frame(self, records: Iterable[dict], extra: dict[str, Sequence[Any]] | None = None) -> pd.DataFrame:
        """Records -> a typed DataFrame with exactly this collection's columns (``extra`` supplies columns
        that are not in the records themselves, e.g. a parent's id or deletion marks)."""
        records = records if isinstance(records, list) else list(records)
        extra = extra or {}
        cols = self.new_columns()
        self.extend_columns(cols, records)
        cols.update({k: list(v) for k, v in extra.items() if k in cols})
        return self.frame_from_columns(cols)

    def new_columns(self) -> dict[str, list]:
        return {c.name: [] for c in self.columns}

    @cached_property
    def _extractors(self) -> tuple[tuple[str, Callable[[list[dict]], list]], ...]:
        return tuple((c.name, _extractor(c)) for c in self.columns)

    def extend_columns(self, cols: dict[str, list], records: list[dict]) -> None:
        """Append records to per-column lists: cheap per page; the DataFrame is built once per batch
        (pandas' fixed cost per frame would otherwise dominate 150-record pages).

        JSON values are encoded here, page by page, with the options ``prepare_frame`` uses (so it need
        not parse the text again, see ``encoded_json``): a buffered batch holds one string per value instead
        of a tree of dicts and lists. Measured on 300,000 contacts that is ~3x less memory per
        buffered record and no cyclic-GC scans of the buffers (full collections over them were ~6 s CPU)."""
        for name, extract in self._extractors:
            cols[name].extend(extract(records))

    def frame_from_columns(self, cols: dict[str, list], arrow: bool = False) -> pd.DataFrame:
        """The typed frame. ``arrow``: text, integer, boolean and timestamp columns are Arrow-backed, built
        from the lists in one C pass each; ``prepare_frame`` passes such columns through and DuckDB scans
        them in place, where numpy/object columns cost a conversion to Python objects and another back to
        Arrow (measured: ~100 ms less CPU per 20,000 contacts). JSON text, already encoded, is Arrow text as
        well, which ``prepare_frame`` takes without parsing it again. A column pyarrow refuses (e.g. numbers in a text column) falls
        back to the object form, so the values written are the same either way."""
        typed = _arrow_typed if arrow else _typed
        # copy=False: the typed columns are new and only this frame holds them (no consolidating copy)
        return pd.DataFrame({c.name: typed(cols[c.name], c.kind) for c in self.columns}, copy=False)


_DUMPS = orjson.dumps


def _extractor(col: Col) -> Callable[[list[dict]], list]:
    """One column of a page of records: a plain ``dict.get`` for top-level fields, ``Col.get`` for dotted
    paths; every JSON value (object, array, string, number, boolean) becomes its JSON text, None stays NULL."""
    name = col.path or col.name
    nested = "." in name
    if col.kind is not Kind.JSON:
        if nested:
            return lambda records: [col.get(r) for r in records]
        return lambda records: [r.get(name) for r in records]

    def json_column(records: list[dict]) -> list:
        values = [col.get(r) for r in records] if nested else [r.get(name) for r in records]
        return [None if v is None else _DUMPS(v, option=JSON_ENCODE_OPTION, default=str).decode() for v in values]

    return json_column


_ARROW = {Kind.STR: pa.string(), Kind.JSON: pa.string(), Kind.INT: pa.int64(), Kind.BOOL: pa.bool_()}
_UTC_NS = pa.timestamp("ns", tz="UTC")


def _arrow_typed(values: list[Any], kind: Kind) -> Any:
    try:
        if kind is Kind.TS:
            seconds = pa.array(values, pa.int64())
            array = pc.multiply_checked(seconds, 1_000_000_000).cast(_UTC_NS)
        else:
            array = pa.array(values, _ARROW[kind])
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return _typed(values, kind)  # e.g. numbers in a text column: str() them as before
    return pd.Series(pd.arrays.ArrowExtensionArray(array))


def _typed(values: list[Any], kind: Kind) -> Any:
    if kind is Kind.TS:
        # integers, not floats: float seconds * 1e9 can trip numpy overflow checks
        return pd.to_datetime(pd.Series(pd.array(values, dtype="Int64")), unit="s", utc=True).astype("datetime64[ns, UTC]")
    if kind is Kind.INT:
        return pd.array(values, dtype="Int64")
    if kind is Kind.BOOL:
        return pd.array(values, dtype="boolean")
    if kind is Kind.JSON:
        return pd.Series(values, dtype=object)
    text = pd.Series(values, dtype=object)
    # C passes instead of a Python one: text and None only (no NaN, which str() would turn into 'nan')
    only_text = pd.api.types.infer_dtype(text, skipna=True) in ("string", "empty")
    if only_text and int(text.isna().sum()) == values.count(None):
        return text
    return pd.Series([None if v is None else str(v) for v in values], dtype=object)


COLLECTIONS: tuple[Collection, ...] = (
    Collection(
        "contacts", "Intercom contacts (users and leads); vanished ones (merged, archived) keep a deleted_at.",
        "GET /contacts", "data", ("id",), Paging.CURSOR, Replication.INCREMENTAL_SEARCH,
        (Col("id"), Col("external_id"), Col("email"), Col("phone"), Col("name"), Col("role"), Col("owner_id"),
         Col("custom_attributes", J), Col("location", J), Col("tags", J), Col("companies", J),
         Col("unsubscribed_from_emails", B), Col("browser"), Col("os"),
         Col("created_at", T), Col("updated_at", T), Col("signed_up_at", T), Col("last_seen_at", T),
         *DELETION, Col("merged_into")),
        search_endpoint="POST /contacts/search", lookback_seconds=86_400,  # contract §8.1: at least a day
    ),
    Collection(
        "companies", "Intercom companies, read in full through the scroll API (one scroll at a time).",
        "GET /companies/scroll", "data", ("id",), Paging.SCROLL, Replication.FULL_SCROLL,
        (Col("id"), Col("company_id"), Col("name"), Col("plan", J), Col("size", I), Col("website"),
         Col("industry"), Col("monthly_spend", I), Col("session_count", I), Col("user_count", I),
         Col("custom_attributes", J), Col("tags", J), Col("created_at", T), Col("updated_at", T),
         Col("remote_created_at", T), Col("last_request_at", T)),
        pool="intercom_scroll",
    ),
    Collection(
        "conversations", "Intercom conversations; parts_truncated marks those beyond the API's 500-part cap.",
        "GET /conversations", "conversations", ("id",), Paging.CURSOR, Replication.INCREMENTAL_SEARCH,
        (Col("id"), Col("title"), Col("state"), Col("open", B), Col("read", B), Col("priority"),
         Col("admin_assignee_id", I), Col("team_assignee_id", I), Col("source", J), Col("contacts", J),
         Col("tags", J), Col("statistics", J), Col("custom_attributes", J),
         Col("created_at", T), Col("updated_at", T), Col("waiting_since", T), Col("snoozed_until", T),
         Col("parts_total", I), Col("parts_loaded", I), Col("parts_truncated", B), *DELETION),
        search_endpoint="POST /conversations/search", lookback_seconds=3_600,  # §8.1: minutes to hours
    ),
    Collection(
        "conversation_parts", "Parts of each changed conversation (the 500 most recent the API returns).",
        "GET /conversations/{conversation_id}", "conversation_parts.conversation_parts",
        ("conversation_id", "id"), Paging.PARENT, Replication.CHILD,
        (Col("conversation_id"), Col("id"), Col("part_type"), Col("body"), Col("author", J),
         Col("assigned_to", J), Col("attachments", J), Col("redacted", B), Col("state"), Col("external_id"),
         Col("created_at", T), Col("updated_at", T), Col("notified_at", T)),
    ),
    Collection("tags", "Intercom tags (no timestamps upstream: full refresh).", "GET /tags", "data", ("id",),
               Paging.NONE, Replication.FULL, (Col("id"), Col("name"))),
    Collection("segments", "Intercom segments with their member counts.", "GET /segments", "segments", ("id",),
               Paging.NONE, Replication.FULL,
               (Col("id"), Col("name"), Col("person_type"), Col("count", I), Col("created_at", T),
                Col("updated_at", T))),
    Collection("admins", "Intercom admins (teammates).", "GET /admins", "admins", ("id",), Paging.NONE,
               Replication.FULL,
               (Col("id"), Col("name"), Col("email"), Col("job_title"), Col("away_mode_enabled", B),
                Col("away_mode_reassign", B), Col("has_inbox_seat", B), Col("team_ids", J), Col("role", J))),
    Collection("teams", "Intercom teams and their admins.", "GET /teams", "teams", ("id",), Paging.NONE,
               Replication.FULL,
               (Col("id"), Col("name"), Col("admin_ids", J), Col("assignment_limit", I),
                Col("distribution_method"), Col("admin_priority_level", J))),
)

BY_NAME = {c.name: c for c in COLLECTIONS}

#: Query params sent with every bulk read (segments: member counts).
BULK_PARAMS: dict[str, dict[str, str]] = {"segments": {"include_count": "true"}}
