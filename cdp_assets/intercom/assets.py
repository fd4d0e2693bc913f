"""Intercom assets, generated from the catalog.

* Full-refresh collections (tags, segments, admins, teams) and companies (scroll) are one factory: read
  everything, return a frame, the I/O manager replaces the table.
* Contacts and conversations (+ parts) are incremental and stream: pages are merged into the warehouse in
  batches by a background writer (flat memory), the cursor is recorded as materialization metadata
  (``intercom/cursor``, unix seconds) only after the whole window is read, and vanished records are marked
  (``deleted_at``/``deleted_reason``) instead of left stale.
"""

# No `from __future__ import annotations`: Dagster reads the config and context annotations at runtime.

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    AssetsDefinition,
    Backoff,
    Config,
    MaterializeResult,
    MetadataValue,
    Output,
    RetryPolicy,
    asset,
    multi_asset,
)
from pydantic import Field

from ..shared.conventions import OWNER, asset_kinds
from ..shared.warehouse import TableRef, WarehouseResource, WriteMode, WriteResult, table_metadata, write_metadata
from .catalog import BULK_PARAMS, BY_NAME, COLLECTIONS, Collection, Paging, Replication
from .client import IntercomClient
from .resources import IntercomResource
from .sync import (
    CURSOR_KEY,
    BatchWriter,
    WindowReport,
    fewer_gc_passes,
    live_ids,
    mark_deleted,
    now,
    read_window,
    stored_cursor,
)

GROUP = "intercom"
RETRY = RetryPolicy(max_retries=3, delay=15, backoff=Backoff.EXPONENTIAL)


def key_of(name: str) -> AssetKey:
    return AssetKey(["intercom", name])


def table_of(name: str) -> TableRef:
    return TableRef.for_asset_key(key_of(name).path)


#: The Intercom workspace itself, an external asset: where every collection's lineage starts.
WORKSPACE = AssetKey(["intercom", "workspace"])
workspace_spec = AssetSpec(
    WORKSPACE, group_name=GROUP, owners=[OWNER], kinds={"intercom"},
    description="The Intercom workspace (REST API, Intercom-Version 2.16) every intercom/* table is read from.",
)


def _spec_kwargs(col: Collection, *upstream: AssetKey) -> dict[str, Any]:
    return dict(group_name=GROUP, kinds=asset_kinds("intercom"), owners=[OWNER], description=col.description,
                metadata=table_metadata(col.write_mode, col.primary_key, columns=col.table_columns,
                                         descriptions=col.column_sources),
                deps=[WORKSPACE, *upstream])


# ---------------------------------------------------------------------------------------------- full refresh


def snapshot_asset(col: Collection) -> AssetsDefinition:
    """A collection read in full and replaced (the I/O manager writes the returned frame)."""
    method, path = col.endpoint.split(" ", 1)

    @asset(key=key_of(col.name), pool=col.pool, retry_policy=RETRY, **_spec_kwargs(col))
    def _snapshot(context: AssetExecutionContext, intercom: IntercomResource) -> Output:
        with intercom.client(context.log) as client:
            if col.paging is Paging.SCROLL:
                records = client.read_companies()
            else:
                records = client.get(path, BULK_PARAMS.get(col.name)).get(col.records_key) or []
            stats = client.stats_metadata
        return Output(col.frame(records), metadata={**stats, "cdp/records": len(records)})

    return _snapshot


# ---------------------------------------------------------------------------------------------- incremental


class IncrementalConfig(Config):
    full_refresh: bool = Field(default=False, description="Ignore the stored cursor and re-read everything.")
    reconcile: bool = Field(
        default=False,
        description="Read the full id set and mark records that vanished upstream (the daily reconciliation).",
    )
    lookback_seconds: int | None = Field(default=None, description="Re-read window before the cursor (default per collection).")
    batch_size: int = Field(default=20_000, description="Records per warehouse merge.")


class ConversationsConfig(IncrementalConfig):
    parts_concurrency: int = Field(default=4, description="Conversations fetched at once for their parts.")
    batch_size: int = Field(default=2_000, description="Conversations per warehouse merge.")


def _final_metadata(warehouse: WarehouseResource, table: TableRef, col: Collection, rows: int) -> dict[str, Any]:
    columns = warehouse.columns(table)
    if columns is None:
        return {"dagster/row_count": MetadataValue.int(0), "cdp/skipped": MetadataValue.text("no records upstream yet")}
    result = WriteResult(warehouse.fqn(table), WriteMode.MERGE, rows, warehouse.row_count(table), columns)
    return write_metadata(result, col.primary_key)


def _cursor_metadata(cursor: int | None, mode: str, window: WindowReport | None, marked: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"intercom/mode": MetadataValue.text(mode), "intercom/marked_deleted": MetadataValue.int(marked)}
    if cursor is not None:
        meta[CURSOR_KEY] = MetadataValue.int(cursor)
        meta["intercom/cursor_at"] = MetadataValue.text(dt.datetime.fromtimestamp(cursor, dt.timezone.utc).isoformat())
    if window is not None:
        meta["intercom/window_passes"] = MetadataValue.int(window.passes)
        meta["intercom/window_repaged_from"] = MetadataValue.json(window.repaged_from)
        meta["intercom/window_complete"] = MetadataValue.bool(window.complete)
    return meta


class _MaxUpdated:
    """The next cursor: the newest ``updated_at`` accepted (never past the run's frozen bound)."""

    def __init__(self, previous: int | None, bound: int):
        self.value, self.bound = previous, bound

    def see(self, records: Iterable[dict]) -> None:
        for r in records:
            u = int(r.get("updated_at") or 0)
            if u <= self.bound and (self.value is None or u > self.value):
                self.value = u


CONTACTS = BY_NAME["contacts"]
#: What paging reads of each contact (the cursor, merge lineage, vanished ids); rows come from the raw pages.
CONTACT_PAGING = ("id", "updated_at", "merge_history")


@asset(key=key_of("contacts"), pool="intercom_api", retry_policy=RETRY,
       **_spec_kwargs(CONTACTS))
def contacts(context: AssetExecutionContext, config: IncrementalConfig, intercom: IntercomResource,
             warehouse: WarehouseResource) -> MaterializeResult:
    table = table_of("contacts")
    bound = now()  # frozen upper bound: rows updated during the run are left to the next run
    cursor = None if config.full_refresh else stored_cursor(context.instance, key_of("contacts"), warehouse, table)
    full = cursor is None or config.full_refresh or config.reconcile
    lookback = CONTACTS.lookback_seconds if config.lookback_seconds is None else config.lookback_seconds
    writer = BatchWriter(warehouse, CONTACTS, table, config.batch_size)
    newest = _MaxUpdated(None if full else cursor, bound)
    marks: dict[str, dict[str, Any]] = {}
    window: WindowReport | None = None

    def take(records: list[dict], page: bytes | None) -> None:
        for r in records:  # merge lineage: the target lists the contacts merged into it
            for m in r.get("merge_history") or []:
                marks[m["source_contact_id"]] = {"deleted_at": m.get("merged_at") or bound,
                                                 "deleted_reason": "merged", "merged_into": r["id"]}
        newest.see(records)
        writer.add(records, page)

    try:
        with intercom.client(context.log) as client, fewer_gc_passes():
            params = {"include_merge_history": "true"}
            if full:
                before = live_ids(warehouse, table)
                seen: set[str] = set()  # only ids that were live before can have vanished
                pages = client.cursor_pages("GET", "/contacts", "data", params=params, fields=CONTACT_PAGING)
                for page in pages:
                    if before:
                        seen.update(r["id"] for r in page.records)
                    take(page.records, page.raw)
                writer.flush()
                marks.update(_contact_fates(client, sorted(before - seen - set(marks)), bound))
            else:
                window = WindowReport()
                lower = cursor - lookback
                context.log.info(f"contacts: window {lower} .. {bound} (cursor {cursor}, lookback {lookback}s)")
                for page in read_window(client, "/contacts/search", "data", lower, bound, params=params,
                                        report=window, fields=CONTACT_PAGING):
                    take(page.records, page.raw)
                writer.flush()
            marked = mark_deleted(warehouse, CONTACTS, table, marks)
            stats = client.stats_metadata
    finally:
        writer.close()
    mode = "full_refresh" if config.full_refresh else ("reconcile" if config.reconcile else ("initial" if cursor is None else "incremental"))
    return MaterializeResult(metadata={
        **_final_metadata(warehouse, table, CONTACTS, writer.rows), **stats,
        **_cursor_metadata(newest.value, mode, window, marked), "cdp/records": MetadataValue.int(writer.rows),
    })


def _contact_fates(client: IntercomClient, vanished: list[str], at: int) -> dict[str, dict[str, Any]]:
    """Ask the API what became of contacts that are no longer listed: 410 = merged (Link: canonical),
    404 = archived or deleted."""
    marks: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for cid, (fate, canonical) in zip(vanished, pool.map(client.contact_fate, vanished)):
            if fate != "live":
                marks[cid] = {"deleted_at": at, "deleted_reason": fate, "merged_into": canonical}
    return marks


CONVERSATIONS = BY_NAME["conversations"]
#: What paging reads of each conversation: which ones changed (each is then fetched whole, with its parts).
CONVERSATION_PAGING = ("id", "updated_at")
PARTS = BY_NAME["conversation_parts"]


@multi_asset(
    specs=[AssetSpec(key_of("conversations"), **_spec_kwargs(CONVERSATIONS)),
           AssetSpec(key_of("conversation_parts"), **_spec_kwargs(PARTS, key_of("conversations")))],
    name="intercom_conversations",
    description="Changed Intercom conversations and all parts of each (re-fetched per conversation).",
    pool="intercom_api",
    retry_policy=RETRY,
)
def conversations(context: AssetExecutionContext, config: ConversationsConfig, intercom: IntercomResource,
                  warehouse: WarehouseResource):
    table, parts_table = table_of("conversations"), table_of("conversation_parts")
    bound = now()
    cursor = None if config.full_refresh else stored_cursor(context.instance, key_of("conversations"), warehouse, table)
    full = cursor is None or config.full_refresh or config.reconcile
    lookback = CONVERSATIONS.lookback_seconds if config.lookback_seconds is None else config.lookback_seconds
    conv_writer = BatchWriter(warehouse, CONVERSATIONS, table, config.batch_size)
    parts_writer = BatchWriter(warehouse, PARTS, parts_table, config.batch_size * 10)
    newest = _MaxUpdated(None if full else cursor, bound)
    fetched: dict[str, int] = {}  # id -> updated_at already fetched in this run (re-paged windows overlap)
    truncated = 0
    window: WindowReport | None = None

    def process(client: IntercomClient, pool: ThreadPoolExecutor, items: list[dict]) -> None:
        nonlocal truncated
        todo = [it for it in items if fetched.get(it["id"]) != it["updated_at"]]
        for it in todo:
            fetched[it["id"]] = it["updated_at"]
        rows, parts = [], []
        for detail in pool.map(lambda it: client.conversation(it["id"]), todo):
            if detail is None:
                continue  # deleted since the search; the tombstone feed marks it
            got = (detail.get("conversation_parts") or {}).get("conversation_parts") or []
            counted = (detail.get("statistics") or {}).get("count_conversation_parts")
            total = counted - 1 if counted else len(got)  # the count includes the opening message
            row = {**detail, "parts_total": total, "parts_loaded": len(got),
                   "parts_truncated": total > len(got)}
            row.pop("conversation_parts", None)  # written to their own table: not encoded twice
            rows.append(row)
            truncated += total > len(got)
            parts.extend({**p, "conversation_id": detail["id"]} for p in got)
        newest.see(rows)
        conv_writer.add(rows)
        parts_writer.add(parts)

    try:
        with intercom.client(context.log) as client, ThreadPoolExecutor(config.parts_concurrency) as pool, \
                fewer_gc_passes():
            marks: dict[str, dict[str, Any]] = {}
            if full:
                before = live_ids(warehouse, table)
                seen: set[str] = set()
                pages = client.cursor_pages("GET", "/conversations", "conversations", fields=CONVERSATION_PAGING)
                for page in pages:
                    seen.update(r["id"] for r in page.records)
                    process(client, pool, page.records)
                since = None
            else:
                window = WindowReport()
                since = cursor - lookback
                for page in read_window(client, "/conversations/search", "conversations", since, bound,
                                        report=window, fields=CONVERSATION_PAGING):
                    process(client, pool, page.records)
            conv_writer.flush()
            parts_writer.flush()
            for item in client.deleted_conversations(since):
                marks[item["id"]] = {"deleted_at": item.get("deleted_at") or bound, "deleted_reason": "deleted"}
            if full:
                for cid in sorted(before - seen - set(marks)):
                    if client.conversation(cid) is None:
                        marks[cid] = {"deleted_at": bound, "deleted_reason": "deleted"}
            marked = mark_deleted(warehouse, CONVERSATIONS, table, marks)
            stats = client.stats_metadata
    finally:
        conv_writer.close()
        parts_writer.close()
    mode = "full_refresh" if config.full_refresh else ("reconcile" if config.reconcile else ("initial" if cursor is None else "incremental"))
    yield MaterializeResult(asset_key=key_of("conversations"), metadata={
        **_final_metadata(warehouse, table, CONVERSATIONS, conv_writer.rows), **stats,
        **_cursor_metadata(newest.value, mode, window, marked),
        "intercom/parts_truncated_conversations": MetadataValue.int(truncated),
    })
    yield MaterializeResult(asset_key=key_of("conversation_parts"), metadata={
        **_final_metadata(warehouse, parts_table, PARTS, parts_writer.rows),
        "intercom/conversations_fetched": MetadataValue.int(len(fetched)),
    })


SNAPSHOT_ASSETS = [snapshot_asset(c) for c in COLLECTIONS if c.replication in (Replication.FULL, Replication.FULL_SCROLL)]
INCREMENTAL_ASSETS = [contacts, conversations]
ALL_ASSETS = [*INCREMENTAL_ASSETS, *SNAPSHOT_ASSETS]
