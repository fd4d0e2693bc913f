"""From catalog row to warehouse rows: the request loop per object kind, row shaping, chunked writes.

Everything here is plain Python (no Dagster), so the assets, the spec tests and the benchmark share it.

* ``record_batches`` walks an object's pages (per parent row, per month, from a bookmark…) and yields one
  page of records at a time: a collection is never held whole.
* ``shape`` turns a page into a DataFrame: parent ids injected, secrets hashed or dropped, bigint strings cast
  to int64, ISO-8601 and unix-second fields to UTC timestamps, ``period`` as a DATE.
* ``ChunkedWriter`` writes frames of ``chunk_rows`` through the warehouse interface: the first chunk with the
  object's write mode, later ones appended (merges stay merges). Objects smaller than one chunk (every
  ordinary workspace) are therefore written in one transaction; a huge full refresh trades that for memory
  that stays flat however large the workspace grows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import orjson
import pandas as pd

from ..shared.http import Progress
from ..shared.warehouse import (
    LogicalType,
    Slice,
    TableRef,
    WarehouseResource,
    WriteMode,
    WritePlan,
    WriteResult,
)
from ..shared.warehouse.duckdb import DuckDBHold
from .catalog import PERIOD_COLUMN, Kind, SegmentObject
from .client import SegmentClient

UTC = dt.timezone.utc
#: settings keys treated as secrets (masked by the API, but still credentials-shaped; contract §10)
SECRET_KEY = re.compile(r"(key|secret|password|passwd|token|credential|private|auth)", re.IGNORECASE)
#: current API limits for DAY granularity are 14 d range and 14 d look-back (contracts README drift item 3);
#: a day-aligned window ending at today's midnight can reach back at most 13 whole days inside that
MAX_DELIVERY_WINDOW_DAYS = 13
AUDIT_HISTORY = dt.timedelta(days=90)


class NotEntitled(Exception):
    """A gated object answered 403: the workspace's plan or features do not include it."""


# ---------------------------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class MetricsWindow:
    granularity: str
    start: str
    end: str

    @classmethod
    def days_before(cls, now: dt.datetime, days: int) -> MetricsWindow:
        if not 1 <= days <= MAX_DELIVERY_WINDOW_DAYS:
            raise ValueError(f"delivery metrics window must be 1-{MAX_DELIVERY_WINDOW_DAYS} days (DAY limits), got {days}")
        end = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = end - dt.timedelta(days=days)
        return cls("DAY", _iso(start), _iso(end))


def _iso(ts: dt.datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def audit_start(bookmark: dt.datetime | None, now: dt.datetime, overlap: dt.timedelta) -> str:
    """``startTime`` for an audit run: bookmark minus overlap, never older than the API's 90-day history."""
    oldest = now - AUDIT_HISTORY + dt.timedelta(minutes=1)
    start = oldest if bookmark is None else max(bookmark - overlap, oldest)
    return _iso(start)


def month_keys(start: dt.date, end: dt.date) -> list[dt.date]:
    """First days of every month from ``start``'s month up to (excluding) ``end``."""
    out, m = [], start.replace(day=1)
    while m < end:
        out.append(m)
        m = (m.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return out


# ---------------------------------------------------------------------------------------------- requests


def _fill(path: str, values: Mapping[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), path)


def record_batches(
    client: SegmentClient,
    obj: SegmentObject,
    *,
    parents: Iterable[Mapping[str, Any]] = (),
    period: dt.date | None = None,
    start_time: str | None = None,
    window: MetricsWindow | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Yield the object's records a page at a time (fan-out rows carry their parent ids)."""
    if obj.kind is Kind.LIST:
        yield from _records(client, obj, obj.path, dict(obj.params))
    elif obj.kind is Kind.USAGE:
        if period is None:
            raise ValueError(f"{obj.name} is read one month (period) at a time")
        yield from _records(client, obj, obj.path, {**obj.params, "period": period.isoformat()})
    elif obj.kind is Kind.AUDIT:
        # endTime left unset on purpose: it defaults to now and the cursor then pins it (contract §6)
        params = {**obj.params, **({"startTime": start_time} if start_time else {})}
        yield from _records(client, obj, obj.path, params)
    elif obj.kind is Kind.FAN_OUT:
        for parent in parents:
            ids = {param: parent[column] for param, column in obj.parent_ids.items()}
            for batch in _records(client, obj, _fill(obj.path, ids), dict(obj.params)):
                yield [{**rec, **ids} for rec in batch]
    elif obj.kind is Kind.METRICS:
        if window is None:
            raise ValueError(f"{obj.name} needs an explicit window (contract §7)")
        for parent in parents:
            ids = {param: parent[column] for param, column in obj.parent_ids.items()}
            query = {**obj.params, "sourceId": ids["sourceId"], "granularity": window.granularity,
                     "startTime": window.start, "endTime": window.end}
            path = _fill(obj.path, {"destinationId": ids["destinationId"]})
            data = _call(client, obj, lambda p=path, q=query: client.get(p, q, obj.accept))
            yield flatten_metrics(data.get(obj.records) or {}, ids["destinationId"], window)


def _call(client: SegmentClient, obj: SegmentObject, fn):
    from .client import SegmentForbidden

    try:
        return fn()
    except SegmentForbidden as exc:
        if obj.gated:
            raise NotEntitled(f"segment/{obj.name}: the workspace is not entitled ({exc})") from None
        raise SegmentForbidden(
            f"{exc}; segment/{obj.name} is not a plan-limited object, so check the token's role "
            f"(held in {client.token_variable})", 403,
        ) from None


def _records(client: SegmentClient, obj: SegmentObject, path: str, params: dict[str, Any]) -> Iterator[list[dict]]:
    pages = client.pages(path, obj.records, params, obj.accept)
    while True:
        page = _call(client, obj, lambda: next(pages, None))
        if page is None:
            return
        yield page.records


def flatten_metrics(summary: Mapping[str, Any], destination_id: str, window: MetricsWindow) -> list[dict[str, Any]]:
    """One row per metric of a delivery-metrics summary; the payload has no destinationId, so inject it."""
    base = {
        "destinationId": destination_id, "sourceId": summary.get("sourceId"),
        "destinationMetadataId": summary.get("destinationMetadataId"), "granularity": window.granularity,
        "startTime": window.start, "endTime": window.end,
    }
    return [
        {**base, "metricName": m.get("metricName"), "total": m.get("total"), "breakdown": m.get("breakdown")}
        for m in summary.get("metrics") or []
    ]


# ---------------------------------------------------------------------------------------------- shaping


def _hash(value: Any) -> str:
    return "sha256:" + hashlib.sha256(str(value).encode()).hexdigest()[:32]


def scrub_settings(settings: Any, secrets: str) -> Any:
    """Secret-like keys of a settings object hashed (``hash``) or removed (``drop``), recursively."""
    if isinstance(settings, dict):
        out = {}
        for k, v in settings.items():
            if SECRET_KEY.search(k) and not isinstance(v, (dict, list)):
                if secrets == "hash" and v is not None:
                    out[k] = _hash(v)
            else:
                out[k] = scrub_settings(v, secrets)
        return out
    if isinstance(settings, list):
        return [scrub_settings(v, secrets) for v in settings]
    return settings


def _scrub(obj: SegmentObject, rec: dict[str, Any], secrets: str) -> dict[str, Any]:
    if not (obj.sensitive or obj.settings):
        return rec
    rec = dict(rec)
    for f in obj.sensitive:
        if f in rec:
            value = rec.pop(f)
            if secrets == "hash":
                rec[f"{f}_sha256"] = [_hash(v) for v in value] if isinstance(value, list) else _hash(value)
    for f in obj.settings:
        if f in rec:
            rec[f] = scrub_settings(rec[f], secrets)
    return rec


def shape(obj: SegmentObject, records: Sequence[dict[str, Any]], *, secrets: str = "hash",
          period: dt.date | None = None) -> pd.DataFrame:
    """A page (or chunk) of API records as a typed frame ready for the warehouse."""
    df = pd.DataFrame.from_records([_scrub(obj, r, secrets) for r in records])
    for col in obj.bigints:
        if col in df:
            # bigint strings: int() is exact beyond 2**53, where a float round-trip is not
            df[col] = df[col].map(lambda v: None if v is None else int(v), na_action="ignore").astype("Int64")
    for col in obj.timestamps:
        if col in df:
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    for col in obj.epoch_seconds:
        if col in df:
            df[col] = pd.to_datetime(pd.to_numeric(df[col]), unit="s", utc=True)
    if obj.kind is Kind.METRICS and "total" in df:
        df["total"] = pd.to_numeric(df["total"]).astype("float64")
    if period is not None:
        df[PERIOD_COLUMN] = [period] * len(df)  # dt.date objects: a DATE column
    return df


def period_mismatches(df: pd.DataFrame, period: dt.date) -> int:
    """Rows whose ``periodStart`` is not the requested calendar month (non-calendar billing; contract §5)."""
    if "periodStart" not in df or df.empty:
        return 0
    expected = pd.Timestamp(period, tz="UTC")
    return int((df["periodStart"] != expected).sum())


# ---------------------------------------------------------------------------------------------- writing


@dataclass
class ChunkedWriter:
    warehouse: WarehouseResource
    obj: SegmentObject
    secrets: str = "hash"
    period: dt.date | None = None
    chunk_rows: int = 50_000
    log: logging.Logger | Any = None
    #: also cap a chunk at about this much JSON, so wide records (catalog entries of ~1.5 KB) make smaller
    #: chunks than narrow ones (usage rows of ~250 B) and memory stays flat whatever the object
    chunk_bytes: int = 16 * 2**20
    rows: int = 0
    result: WriteResult | None = None
    period_mismatches: int = 0
    _buffer: list[dict[str, Any]] = field(default_factory=list)
    _chunks: int = 0
    #: DuckDB: one open database across the chunks, memory-capped, one checkpoint per period (``DuckDBHold``),
    #: so a write's peak memory does not grow with the table; a no-op on other warehouses
    _hold: DuckDBHold = field(init=False)

    def __post_init__(self) -> None:
        self._hold = DuckDBHold(self.warehouse)

    @property
    def table(self) -> TableRef:
        return TableRef.for_asset_key(self.obj.asset_path)

    @property
    def declared_types(self) -> dict[str, LogicalType]:
        """The catalog row's column types: they decide a column whose values cannot tell (all NULL in the
        first chunk), so a new table gets the declared types whichever records come first."""
        return {c.name: c.type for c in self.obj.declared_columns}

    def _plan(self) -> WritePlan:
        mode = self.obj.write_mode
        if self._chunks and mode in (WriteMode.REPLACE, WriteMode.PARTITION):
            mode = WriteMode.APPEND  # the first chunk already cleared the table / the partition
        slice_ = None
        if mode is WriteMode.PARTITION:
            assert self.period is not None
            nxt = (self.period.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
            slice_ = Slice(PERIOD_COLUMN, start=self.period, end=nxt)
        return WritePlan(self.table, mode, self.obj.primary_key, slice_, column_types=self.declared_types)

    _limit: int = 0

    def add(self, records: Sequence[dict[str, Any]]) -> None:
        if not self._limit and records:
            # measured once, on the first page: serialising one page is cheap next to fetching it
            per_record = max(len(orjson.dumps(list(records), default=str)) // len(records), 1)
            self._limit = max(1, min(self.chunk_rows, self.chunk_bytes // per_record))
        self._buffer.extend(records)
        if self._limit and len(self._buffer) >= self._limit:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        df = shape(self.obj, self._buffer, secrets=self.secrets, period=self.period)
        if self.period is not None:
            self.period_mismatches += period_mismatches(df, self.period)
        self._buffer = []
        self._hold.before_write()
        self.result = self.warehouse.write(df, self._plan())
        self._hold.after_write()
        self.rows += len(df)
        self._chunks += 1

    def close(self) -> WriteResult | None:
        try:
            self.flush()
            if self._chunks == 0 and self.obj.write_mode is WriteMode.REPLACE:
                self._empty_replace()
        finally:
            self.release()
        return self.result

    def release(self) -> None:
        """Checkpoint and close the held DuckDB database (idempotent; nothing on other warehouses)."""
        self._hold.release()

    def _empty_replace(self) -> None:
        """The API returned nothing: a full refresh must empty the table (if there is one)."""
        existing = self.warehouse.columns(self.table)
        if existing is None:
            return
        empty = pd.DataFrame({c.name: pd.Series([], dtype=object) for c in existing})
        self.result = self.warehouse.write(empty, WritePlan(self.table, WriteMode.REPLACE, self.obj.primary_key))


def load(
    client: SegmentClient,
    warehouse: WarehouseResource,
    obj: SegmentObject,
    *,
    secrets: str = "hash",
    chunk_rows: int = 50_000,
    log: Any = None,
    period: dt.date | None = None,
    **batches_kwargs: Any,
) -> ChunkedWriter:
    """Fetch one object (or one month of it) and write it; returns the writer with counts and the result."""
    log = log or logging.getLogger("cdp_assets.segment")
    writer = ChunkedWriter(warehouse, obj, secrets, period, chunk_rows, log)
    progress = Progress(log, f"segment/{obj.name}" + (f" {period:%Y-%m}" if period else ""))
    try:
        for batch in record_batches(client, obj, period=period, **batches_kwargs):
            writer.add(batch)
            progress.add(len(batch))
    except BaseException:
        writer.release()  # the chunks written so far stay committed; the held database is closed
        raise
    writer.close()
    progress.done()
    return writer


def parent_rows(warehouse: WarehouseResource, obj: SegmentObject) -> list[dict[str, Any]]:
    """The parent ids a fan-out object needs, read from the parent asset's table (ids only)."""
    assert obj.parent is not None
    table = TableRef("segment", obj.parent)
    columns = sorted(set(obj.parent_ids.values()))
    if warehouse.columns(table) is None:
        raise RuntimeError(f"segment/{obj.name} needs segment/{obj.parent}: materialize it first")
    frame = warehouse.read(table, columns=columns)
    return frame.drop_duplicates().sort_values(columns).to_dict("records")


def latest_timestamp(warehouse: WarehouseResource, obj: SegmentObject, column: str = "timestamp") -> dt.datetime | None:
    table = TableRef.for_asset_key(obj.asset_path)
    if warehouse.columns(table) is None:
        return None
    values = warehouse.read(table, columns=[column])[column]
    if values.empty or values.isna().all():
        return None
    return pd.Timestamp(values.max()).tz_convert("UTC").to_pydatetime()
