"""One asset per catalog row, generated: ``segment/<object>`` in group ``segment``.

Each asset reads its object through ``SegmentResource`` and writes it through the warehouse interface in
chunks (``extract.ChunkedWriter``), so memory stays flat however large the workspace is; the write mode and
primary key it declares in ``table_metadata`` are the ones it writes with, and what the generated checks hold
the table to. Its definition also carries the catalog row's declared columns (``dagster/column_schema``), which
the tests hold equal to the columns written. What varies per kind:

* fan-out objects depend on their parent asset (lineage) and read the parent ids from its table;
* the four usage objects share one monthly partitioning; a run (or a single-run backfill of a range) writes
  each requested month as its own partition of the ``period`` DATE column;
* ``audit_events`` reads from the last loaded timestamp minus an overlap (within the 90-day history) and merges
  on ``id``;
* delivery metrics use an explicit DAY window inside the documented limits, one row per metric;
* a 403 on a gated object records ``cdp/entitled=false`` with a warning and keeps the run green (unless
  ``fail_on_not_entitled``).
"""

# No `from __future__ import annotations`: Dagster inspects the asset functions' annotations at runtime.
import datetime as dt
import os
import warnings
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    AssetsDefinition,
    BackfillPolicy,
    Backoff,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    MonthlyPartitionsDefinition,
    RetryPolicy,
    asset,
)
from dagster._utils.warnings import BetaWarning

from ..shared.conventions import OWNER, asset_kinds
from ..shared.env import ConfigError
from ..shared.http import ApiError
from ..shared.warehouse import WarehouseResource, table_metadata, write_metadata
from .catalog import CATALOG, PERIOD_COLUMN, Kind, SegmentObject
from .client import CursorLoopError, SegmentAuthError, SegmentForbidden
from .extract import (
    ChunkedWriter,
    MetricsWindow,
    NotEntitled,
    audit_start,
    latest_timestamp,
    load,
    month_keys,
    parent_rows,
)
from .resources import SegmentResource

UTC = dt.timezone.utc
#: First usage month when ``CDP_SEGMENT_USAGE_START`` is not set (any day of it; the day is ignored).
DEFAULT_USAGE_START = "2025-01-01"
POOL = "segment_api"
#: errors a step retry cannot fix (transient ones were already retried inside the client)
PERMANENT = (SegmentAuthError, SegmentForbidden, CursorLoopError)
RETRY = RetryPolicy(max_retries=3, delay=30, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
#: The Segment workspace itself, an external asset: the root of every segment/* table's lineage (fan-out objects
#: reach it through their parent).
WORKSPACE = AssetKey(["segment", "workspace"])
workspace_spec = AssetSpec(
    WORKSPACE, group_name="segment", owners=[OWNER], kinds={"segment"},
    description="The Segment workspace behind the Public API (US or EU host) every segment/* table is read from.",
)


def usage_partitions(start: "str | dt.date | None" = None) -> MonthlyPartitionsDefinition:
    """Monthly partitions from the start date's month up to and including the current month (``end_offset=1``:
    the current month is re-pulled every day while it fills up)."""
    raw = start or os.environ.get("CDP_SEGMENT_USAGE_START") or DEFAULT_USAGE_START
    first = (raw if isinstance(raw, dt.date) else dt.date.fromisoformat(str(raw)[:10])).replace(day=1)
    return MonthlyPartitionsDefinition(start_date=first.isoformat(), end_offset=1)


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _not_entitled(context: AssetExecutionContext, segment: SegmentResource, obj: SegmentObject, exc: NotEntitled,
                  stats: dict[str, Any]) -> MaterializeResult:
    if segment.fail_on_not_entitled:
        raise Failure(str(exc), metadata={"cdp/entitled": False}, allow_retries=False) from None
    context.log.warning(f"{exc}. The table is left unchanged; set fail_on_not_entitled to fail instead.")
    return MaterializeResult(metadata={"cdp/entitled": False, **stats})


def _result(writer: ChunkedWriter, obj: SegmentObject, stats: dict[str, Any], **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"cdp/entitled": True, "cdp/rows_loaded": MetadataValue.int(writer.rows), **stats, **extra}
    if writer.result is not None:
        meta = {**write_metadata(writer.result, obj.primary_key), **meta}
    return meta


def _materialize(context: AssetExecutionContext, segment: SegmentResource, warehouse: WarehouseResource,
                 obj: SegmentObject) -> MaterializeResult:
    try:
        return _read_and_write(context, segment, warehouse, obj)
    except ApiError as exc:
        # retrying cannot fix a rejected token, a request bug (4xx) or a looping cursor: fail now, clearly;
        # transient failures were already retried inside the client and may get a step retry
        permanent = isinstance(exc, PERMANENT) or (exc.status is not None and 400 <= exc.status < 500)
        raise Failure(f"segment/{obj.name}: {exc}", allow_retries=not permanent) from None
    except ConfigError as exc:
        raise Failure(f"segment/{obj.name}: {exc}", allow_retries=False) from None


def _read_and_write(context: AssetExecutionContext, segment: SegmentResource, warehouse: WarehouseResource,
                    obj: SegmentObject) -> MaterializeResult:
    common = dict(secrets=segment.secrets, chunk_rows=segment.chunk_rows, log=context.log)
    with segment.open_client(context.log) as client:
        stats = lambda: client.stats.as_metadata()  # noqa: E731 - read at the end, after every request
        try:
            if obj.kind is Kind.USAGE:
                return _load_months(context, client, warehouse, obj, common, stats)
            extra: dict[str, Any] = {}
            kwargs: dict[str, Any] = {}
            if obj.parent:
                kwargs["parents"] = parent_rows(warehouse, obj)
                extra["cdp/parents"] = len(kwargs["parents"])
            if obj.kind is Kind.METRICS:
                window = MetricsWindow.days_before(_now(), segment.delivery_window_days)
                kwargs["window"] = window
                extra.update({"cdp/window_start": window.start, "cdp/window_end": window.end,
                              "cdp/granularity": window.granularity})
            if obj.kind is Kind.AUDIT:
                bookmark = latest_timestamp(warehouse, obj)
                kwargs["start_time"] = audit_start(bookmark, _now(), dt.timedelta(minutes=segment.audit_overlap_minutes))
                extra["cdp/start_time"] = kwargs["start_time"]
            writer = load(client, warehouse, obj, **common, **kwargs)
            if obj.kind is Kind.AUDIT:
                high = latest_timestamp(warehouse, obj)
                extra["cdp/high_watermark"] = high.isoformat() if high else ""
            return MaterializeResult(metadata=_result(writer, obj, stats(), **extra))
        except NotEntitled as exc:
            return _not_entitled(context, segment, obj, exc, stats())


def _load_months(context: AssetExecutionContext, client, warehouse: WarehouseResource, obj: SegmentObject,
                 common: dict[str, Any], stats) -> MaterializeResult:
    """Every month of the run's partition range (one month, or a whole single-run backfill)."""
    window = context.partition_time_window
    months = month_keys(window.start.date(), window.end.date())
    rows: dict[str, int] = {}
    writer = None
    for month in months:
        writer = load(client, warehouse, obj, period=month, **common)
        rows[month.isoformat()] = writer.rows
        if writer.period_mismatches:
            context.log.warning(
                f"segment/{obj.name} {month:%Y-%m}: {writer.period_mismatches} row(s) have a periodStart other than "
                "the calendar month requested (non-calendar billing cycle?)"
            )
    assert writer is not None
    return MaterializeResult(metadata=_result(writer, obj, stats(), **{
        "cdp/rows_loaded": MetadataValue.int(sum(rows.values())), "cdp/rows_per_period": MetadataValue.json(rows),
    }))


def build_segment_asset(obj: SegmentObject, partitions: MonthlyPartitionsDefinition) -> AssetsDefinition:
    """The asset for one catalog row."""
    partitioned = obj.kind is Kind.USAGE

    @asset(
        name=obj.name,
        key_prefix=["segment"],
        group_name="segment",
        description=obj.description,
        kinds=asset_kinds("segment"),
        owners=[OWNER],
        metadata={
            # the declared columns: the UI and lineage checks see the table before its first materialization
            **table_metadata(obj.write_mode, obj.primary_key, PERIOD_COLUMN if partitioned else None,
                             columns=obj.declared_columns, descriptions=obj.column_descriptions),
            "cdp/api_path": obj.path,
            "cdp/entitlement_gated": obj.gated,
        },
        deps=[AssetKey(["segment", obj.parent])] if obj.parent else [WORKSPACE],
        partitions_def=partitions if partitioned else None,
        # a backfill of many months is one run: one step per object walks the months in order, so the API sees
        # at most one caller per object, and the segment_api pool bounds how many objects run at once
        backfill_policy=BackfillPolicy.single_run() if partitioned else None,
        pool=POOL,
        retry_policy=RETRY,
    )
    def _asset(context: AssetExecutionContext, segment: SegmentResource, warehouse: WarehouseResource) -> MaterializeResult:
        return _materialize(context, segment, warehouse, obj)

    return _asset


def build_segment_assets(usage_start: "str | dt.date | None" = None) -> list[AssetsDefinition]:
    """The 18 catalog assets (the external ``segment/workspace`` spec is added by ``defs``)."""
    partitions = usage_partitions(usage_start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)  # backfill_policy is beta; its behaviour is what we want
        return [build_segment_asset(obj, partitions) for obj in CATALOG]
