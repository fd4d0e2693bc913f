"""Incremental machinery: the search window reader, the streaming batch writer, cursors and deletion marks.

The window reader implements contract §7.1 and §8 exactly:

* the upper bound is frozen at run start and applied **client-side** (a ``<`` filter would drop today);
* the lower bound is ``cursor - lookback``, queried as ``(updated_at > c) OR (updated_at = c)`` sorted
  ascending, because contact search matches dates by whole day: ``>`` alone skips the rest of ``c``'s day;
* search cursors are stateless, so a record updated between two pages moves under the cursor and shifts
  the records behind it by one: one of them is never served. The reader notices the symptoms (a record
  served twice, ``total_count`` changing, a repeated cursor) and re-pages the affected part of the window,
  starting at the first-seen ``updated_at`` of the record that moved. Merging on ``id`` absorbs the overlap.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import orjson
import pandas as pd
from dagster import AssetKey, DagsterInstance

from ..shared.warehouse import LogicalType, Slice, TableRef, WarehouseResource, WritePlan, WriteMode, WriteResult
from ..shared.warehouse.duckdb import DuckDBHold
from .catalog import Collection
from .client import IntercomClient, Page, PagingReport

CURSOR_KEY = "intercom/cursor"
MAX_PASSES = 4
ENCODED_PAGE_RECORDS = 500  # records per page when the writer encodes them itself


def since_query(start: int) -> dict:
    """Everything updated at or after ``start`` under day-granular matching (contract §7.1)."""
    return {"operator": "OR", "value": [
        {"field": "updated_at", "operator": ">", "value": start},
        {"field": "updated_at", "operator": "=", "value": start},
    ]}


@dataclass
class WindowReport:
    passes: int = 0
    repaged_from: list[int] = field(default_factory=list)
    records: int = 0
    complete: bool = True


def read_window(client: IntercomClient, path: str, records_key: str, lower: int, bound: int, *,
                params: dict | None = None, report: WindowReport | None = None,
                fields: tuple[str, ...] | None = None) -> Iterator[Page]:
    """Pages of records with ``lower <= updated_at <= bound``, re-paging where a pass was disturbed. A page
    keeps its ``raw`` body only if every record in it was accepted (else ``raw`` is None). ``fields``: as
    for ``cursor_pages`` (must include ``id`` and ``updated_at``); a page with records left out is then
    decoded whole, so that the accepted records are complete."""
    report = report if report is not None else WindowReport()
    start = lower
    for _ in range(MAX_PASSES):
        report.passes += 1
        paging = PagingReport()
        first_seen: dict[str, int] = {}
        moved_from: int | None = None
        body = {"query": since_query(start), "sort": {"field": "updated_at", "order": "ascending"}}
        for page in client.cursor_pages("POST", path, records_key, body=body, params=params, report=paging,
                                        fields=fields):
            kept = []
            for i, r in enumerate(page.records):
                rid, updated = r["id"], int(r["updated_at"])
                if rid in first_seen:  # served twice in one pass: it moved under the cursor
                    old = first_seen[rid]
                    moved_from = old if moved_from is None else min(moved_from, old)
                else:
                    first_seen[rid] = updated
                if lower <= updated <= bound:
                    kept.append(i)
            report.records += len(kept)
            if len(kept) == len(page.records):
                yield page
            else:
                whole = fields is not None and page.raw
                records = orjson.loads(page.raw)[records_key] if whole else page.records
                yield Page([records[i] for i in kept], page.total_count, page.next_token, None)
        disturbed_total = len(set(paging.totals)) > 1  # records entered/left the result while paging
        if moved_from is None and not disturbed_total and not paging.looped:
            return
        # A move only shifts records *behind* the mover's old position; anything else may have shifted any.
        start = max(lower, moved_from) if moved_from is not None and not (disturbed_total or paging.looped) else lower
        report.repaged_from.append(start)
    report.complete = False


# ---------------------------------------------------------------------------------------------- writing


class BatchWriter:
    """Merges record pages into one table in batches, writing from a background thread so that fetching
    the next pages overlaps the warehouse write.

    A batch is kept as the pages' JSON bodies (the decoded records are dropped as soon as paging has read
    what it needs) and turned into a typed frame by ``Collection.frame_from_pages``, in DuckDB, mostly
    outside the GIL, on an extraction thread; a second thread merges it. At most one batch is being
    extracted and one merged while the next one fills: memory stays flat whatever the size of the
    collection. Batches are large (20,000 rows by default) because every warehouse write has a fixed cost
    (connection, schema check, transaction): DuckDB merges 5,000-row batches at ~20k rows/s and 20,000-row
    batches at ~30k rows/s on the reference machine."""

    def __init__(self, warehouse: WarehouseResource, collection: Collection, table: TableRef,
                 batch_size: int = 20_000):
        self.warehouse, self.collection, self.table = warehouse, collection, table
        self.batch_size = batch_size
        self.plan = WritePlan(table, WriteMode.MERGE, collection.primary_key, column_types=collection.column_types,
                              encoded_json=collection.encoded_json)
        self.pages: list[bytes] = []
        self.buffered = 0
        self.pending: Future | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"write-{collection.name}")
        self.extractor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"extract-{collection.name}")
        self.hold = DuckDBHold(warehouse)  # used from the writer thread only
        self.closed = False
        self.result: WriteResult | None = None
        self.rows = 0
        self.batches = 0

    def add(self, records: Sequence[dict], page: bytes | None = None) -> None:
        """Buffer ``records``. ``page``: the response body they were decoded from, if it holds exactly these
        records under the collection's ``records_key`` (it is kept as it is); else they are encoded."""
        if not records:
            return
        if page is not None:
            self.pages.append(page)
        else:  # in slices, so that no one page is large (the extraction takes pages a few MB at a time)
            records = list(records)
            self.pages.extend(self.collection.encode(records[i: i + ENCODED_PAGE_RECORDS])
                              for i in range(0, len(records), ENCODED_PAGE_RECORDS))
        self.buffered += len(records)
        if self.buffered >= self.batch_size:
            self._submit()

    def _submit(self) -> None:
        pages, self.pages, self.buffered = self.pages, [], 0
        # Extraction of this batch overlaps the merge of the previous one (both mostly outside the GIL, in
        # DuckDB); backpressure: one batch extracting, one merging, one filling, never more.
        frame = self.extractor.submit(self.collection.frame_from_pages, pages)
        self._wait()
        self.pending = self.pool.submit(self._write, frame)

    def _write(self, frame_future: Future) -> None:
        frame = frame_future.result()  # a failed extraction fails the write, and so the asset
        self.hold.before_write()
        self.result = self.warehouse.write(frame, self.plan)
        self.rows += len(frame)
        self.batches += 1
        self.hold.after_write()

    def _wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()  # re-raises a failed write here, in the asset's thread

    def flush(self) -> WriteResult | None:
        if self.buffered:
            self._submit()
        self._wait()
        return self.result

    def close(self) -> None:
        """Wait for the writer and release the DuckDB hold (the final checkpoint); always call it."""
        if self.closed:
            return
        self.closed = True
        try:
            self.pool.submit(self.hold.release).result()
        finally:
            self.pool.shutdown(wait=True)
            self.extractor.shutdown(wait=True)


_gc_lock = threading.Lock()
_gc_depth = 0
_gc_saved: tuple[int, int, int] | None = None
#: Cyclic-GC thresholds while pages are read (see ``fewer_gc_passes``): Python's default is (700, 10, 10).
PAGING_GC_THRESHOLDS = (50_000, 20, 10)


@contextlib.contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """Raise the cyclic garbage collector's first threshold while a long paging runs, and restore it after.

    A decoded page is ~2,000 new dicts and lists at once (150 records of nested JSON); at the default
    threshold (700 allocations) every page triggers collections while it is still alive, so it is promoted
    to the older generations, which then fill up and force full collections of the whole heap (Dagster's
    modules, the buffers): measured on 300,000 contacts, ~5,600 young and ~25 full collections, ~5-7 s of
    CPU (a fifth of the load) for nothing, since pages hold no reference cycles and are freed by reference
    counting. At 50,000 a collection runs every ~20 pages, when at most one page is alive: ~0.04 s. Nothing
    else changes: cyclic garbage is still collected, only in larger steps. (Those figures are from before
    contact pages were decoded slim, see ``client.slim_decoder``; whole decodes remain for conversation
    details and for search pages with records past the bound.)"""
    global _gc_depth, _gc_saved
    with _gc_lock:
        if _gc_depth == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(*PAGING_GC_THRESHOLDS)
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)
                _gc_saved = None


# ---------------------------------------------------------------------------------------------- cursor


def stored_cursor(instance: DagsterInstance, key: AssetKey, warehouse: WarehouseResource, table: TableRef) -> int | None:
    """The cursor from the latest materialization's metadata; else the table's max(updated_at) (a table
    loaded before cursors were recorded, or an instance that was wiped); else None (first run)."""
    event = instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    if materialization is not None:
        value = materialization.metadata.get(CURSOR_KEY)
        if value is not None and getattr(value, "value", value) is not None:
            return int(getattr(value, "value", value))
    if warehouse.columns(table) is None:
        return None
    updated = warehouse.read(table, columns=["updated_at"])["updated_at"].dropna()
    return None if updated.empty else int(pd.Timestamp(updated.max()).timestamp())


# ---------------------------------------------------------------------------------------------- deletions


def read_rows(warehouse: WarehouseResource, table: TableRef, ids: Sequence[str], chunk: int = 1_000) -> pd.DataFrame:
    """Rows of ``table`` whose ``id`` is in ``ids``, with integer columns as nullable Int64 so that writing
    them back does not read as a type change."""
    cols = warehouse.columns(table)
    if cols is None or not ids:
        return pd.DataFrame()
    frames = [warehouse.read(table, slice=Slice("id", values=tuple(ids[i: i + chunk]))) for i in range(0, len(ids), chunk)]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for c in cols:
        if c.type is LogicalType.BIGINT and c.name in df:
            df[c.name] = df[c.name].astype("Int64")
        if c.type is LogicalType.BOOLEAN and c.name in df:
            df[c.name] = df[c.name].astype("boolean")
    return df


def mark_deleted(warehouse: WarehouseResource, collection: Collection, table: TableRef,
                 marks: dict[str, dict[str, Any]]) -> int:
    """Set ``deleted_at``/``deleted_reason`` (and any other given fields) on the rows in ``marks``
    (id -> fields). Rows are read back and merged whole, because a merge replaces entire rows; ids the
    table has never seen get a row with only the marks, so the vanished record is still on record."""
    if not marks:
        return 0
    existing = read_rows(warehouse, table, sorted(marks))
    found = set(existing["id"]) if not existing.empty else set()
    stubs = collection.frame([{"id": i} for i in sorted(set(marks) - found)])
    frame = pd.concat([f for f in (existing, stubs) if not f.empty], ignore_index=True)
    for name in {k for m in marks.values() for k in m}:
        values = [marks[i].get(name) for i in frame["id"]]
        if name == "deleted_at":
            frame[name] = pd.to_datetime(pd.Series(pd.array(values, dtype="Int64")), unit="s", utc=True).astype("datetime64[ns, UTC]")
        else:
            frame[name] = pd.Series(values, dtype=object)
    warehouse.write(frame, WritePlan(table, WriteMode.MERGE, collection.primary_key,
                                     column_types=collection.column_types))
    return len(frame)


def live_ids(warehouse: WarehouseResource, table: TableRef) -> set[str]:
    if warehouse.columns(table) is None:
        return set()
    df = warehouse.read(table, columns=["id", "deleted_at"])
    return set(df.loc[df["deleted_at"].isna(), "id"])


def now() -> int:
    return int(time.time())


class Counter:
    """A thread-safe tally for work done in pools."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.value += n
