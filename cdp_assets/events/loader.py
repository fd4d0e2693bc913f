"""Drain a Pub/Sub pull subscription into the event tables, exactly once.

Exactly once in the tables, with at-least-once delivery underneath:

* every table is written with ``merge`` on its key (Segment ``messageId``; Pub/Sub message id for rejects),
  so a redelivered or replayed message overwrites its own row instead of adding one;
* a message is acknowledged only after every table of its batch is committed. A run that dies before the
  write, between two tables' writes, or after the writes but before the ack leaves the messages unacked;
  Pub/Sub redelivers them and the merges make the second write a no-op for rows already there;
* bad input is written to ``rejected`` and then acked like everything else, so it never blocks the
  subscription and is never dropped.

Throughput (see ``benchmarks/events_bench.py``): three stages overlap. A puller thread runs synchronous
``pull`` calls (the emulator returns at most 100 messages each) and reads the raw protobuf, not proto-plus; the
calling thread parses batches; a writer thread writes the previous batch (DuckDB and the network clients
release the GIL while they work) and then acks it. A lease keeper extends the ack deadline of everything
pulled and not yet acked, so a slow write never lets Pub/Sub redeliver a message that is in flight. The
cyclic GC is paused while draining: parsing creates ~30 containers per event, and generational collections
over large live batches cost more than the parsing itself; one cheap young-generation collection runs per batch.

What bounds it against the emulator (``benchmarks/events_bench.py`` prints the CPU of both sides): while any
message is leased and unacked, every ``pull`` copies the subscription's whole undelivered backlog into a new
set (``MessageBacklog.updateExpiredAckDeadlines`` in the emulator jar; found with ``jstack`` samples, confirmed
in its bytecode), so each pull costs time proportional to the backlog and a drain of a large backlog pays
O(backlog^2). A pull made with nothing leased returns early, which is what the raw pull+ack ceiling does.
Acking only after the warehouse commit means pulling with leases out, or committing before every pull (100
messages): a DuckDB commit alone costs 1.3-3 ms of CPU, more than the pull and ack together. The benchmark's
"lease floor" (pull+ack holding one batch's leases, parsing and writing for free) measures that bound in the
same run: ~0.4 of the ceiling at 100,000 messages, and the loader reaches ~0.7 of the floor. The lease count
itself does not matter to the emulator (a deeper prefetch was measured slower: 0.63 of the floor); the
loader bounds it for memory (``max_leased``). Batches of 2,500 cost ~4x the write time of 10,000 (fixed
costs per write); on DuckDB the loader also defers checkpoints to the end of the drain (see ``_hold``).
"""

from __future__ import annotations

import contextlib
import gc
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from dagster import get_dagster_logger

from ..shared.http import Progress
from ..shared.warehouse import TableRef, WarehouseResource, WriteMode, WritePlan, WriteResult
from ..shared.warehouse.duckdb import DuckDBHold
from .parse import ALL_TABLES, ENCODED_JSON, PRIMARY_KEYS, ParsedBatch, RawMessage, parse_batch, table_columns

SCHEMA = "segment_events"
ACK_CHUNK = 2_500  # acknowledge/modifyAckDeadline requests are limited to 512 KB; ack ids can be ~200 bytes
MAX_PULL = 100  # the emulator (and, in practice, Pub/Sub) returns at most this many per pull
#: DuckDB only: memory limit while a drain holds the file. None keeps DuckDB's: a 64 MB cap measured 558 -> 466 MB
#: peak RSS for 100k events but ~10% more CPU an event, and a drain's memory is bounded by its batches anyway.
DRAIN_MEMORY_LIMIT: str | None = None

#: A fault hook for tests: called with (stage, batch number); raising there simulates a crash at that point.
#: Stages: "pulled", "parsed", "written:<table>", "committed" (all tables written, nothing acked), "acked".
Hook = Callable[[str, int], None]


@dataclass(frozen=True)
class DrainSettings:
    max_messages: int = 100_000  # stop pulling after this many (one run's bound)
    max_seconds: float = 120.0  # stop pulling after this long (keep below DuckDB's 300 s lock wait)
    batch_messages: int = 10_000  # messages per write (one transaction per table) and per ack (see max_leased)
    lease_seconds: int = 60  # ack deadline held on pulled, unacked messages (renewed every third of it)
    return_immediately: bool = True  # emulator: empty means empty; live: False (long poll, see resources.py)
    pull_timeout: float = 30.0  # per pull RPC
    max_empty_pulls: int = 1  # consecutive empty pulls that mean "drained"
    flush_seconds: float = 1.0  # write a partial batch after waiting this long for more messages
    # Tables of one batch written concurrently (each is its own transaction anyway). Pays off for network
    # warehouses (round trips overlap); on local DuckDB it only adds CPU contention, so the default is 1.
    table_writers: int = 1
    pull_threads: int = 1  # concurrent pull loops (see _Puller.run)
    # Messages pulled ahead of the batch being assembled (the puller's queue). Every pulled message is leased
    # until its batch is acked, so this and ``max_leased`` bound the run's memory; pulling further ahead is not
    # faster (the emulator's pulls cost the same with one lease out or 40,000, see the module docstring; a
    # 20,000 prefetch measured slower). None: half a batch.
    prefetch_messages: int | None = None
    # Bound on leased (pulled, unacked) messages: the puller waits while this many are out. None: two batches
    # plus the prefetch (one batch being written, one being assembled and parsed).
    max_leased: int | None = None

    def __post_init__(self) -> None:
        if self.batch_messages < 1 or self.max_messages < 1:
            raise ValueError("batch_messages and max_messages must be positive")
        if not 1 <= self.lease_seconds <= 600:
            raise ValueError("lease_seconds must be within Pub/Sub's 1..600 seconds")


@dataclass
class TableTotals:
    rows_written: int = 0  # rows in this run's frames (after in-batch dedup: what the merges wrote)
    last: WriteResult | None = None  # the last write's result: row count and schema after this run


@dataclass
class DrainReport:
    pulled: int = 0
    acked: int = 0
    batches: int = 0
    lease_extensions: int = 0
    seconds: float = 0.0
    stopped_because: str = ""
    seconds_parsing: float = 0.0  # calling thread
    seconds_writing: float = 0.0  # writer thread: warehouse writes
    seconds_acking: float = 0.0  # writer thread: acknowledge calls
    seconds_waiting: float = 0.0  # calling thread blocked on the writer (write-bound when large)
    tables: dict[str, TableTotals] = field(default_factory=lambda: {t: TableTotals() for t in ALL_TABLES})

    @property
    def rejected(self) -> int:
        return self.tables["rejected"].rows_written

    @property
    def events_per_second(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0


def table_ref(table: str) -> TableRef:
    return TableRef(SCHEMA, table)


#: each table's declared column types, for its write plans (computed once, not per write)
COLUMN_TYPES = {table: {c.name: c.type for c in table_columns(table)} for table in ALL_TABLES}


def write_plan(table: str) -> WritePlan:
    return WritePlan(table_ref(table), WriteMode.MERGE, PRIMARY_KEYS[table], column_types=COLUMN_TYPES[table],
                     encoded_json=ENCODED_JSON.get(table, frozenset()))


# ------------------------------------------------------------------------------------------ leases


class Leases:
    """Ack ids pulled and not yet acked, and the thread that keeps their ack deadlines from expiring."""

    def __init__(self, subscriber: Any, subscription: str, lease_seconds: int):
        self._subscriber, self._subscription, self._lease = subscriber, subscription, lease_seconds
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.extensions = 0
        self._thread = threading.Thread(target=self._run, name="pubsub-lease-keeper", daemon=True)

    def __enter__(self) -> Leases:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def add(self, ack_ids: Sequence[str]) -> None:
        with self._lock:
            self._ids.update(ack_ids)

    def release(self, ack_ids: Sequence[str]) -> None:
        with self._lock:
            self._ids.difference_update(ack_ids)

    def count(self) -> int:
        return len(self._ids)

    def outstanding(self) -> list[str]:
        with self._lock:
            return list(self._ids)

    def _run(self) -> None:
        # Renew at a third of the deadline: two renewals can fail before a message is redelivered.
        while not self._stop.wait(self._lease / 3):
            ids = self.outstanding()
            for chunk in _chunks(ids, ACK_CHUNK):
                with contextlib.suppress(Exception):  # a failed renewal only risks a redelivery, which merges
                    self._subscriber.modify_ack_deadline(
                        request={"subscription": self._subscription, "ack_ids": chunk,
                                 "ack_deadline_seconds": self._lease})
                    self.extensions += 1

    def nack_all(self) -> None:
        """Give back everything still leased (after a failure) so it is redelivered now, not at expiry."""
        for chunk in _chunks(self.outstanding(), ACK_CHUNK):
            with contextlib.suppress(Exception):
                self._subscriber.modify_ack_deadline(
                    request={"subscription": self._subscription, "ack_ids": chunk, "ack_deadline_seconds": 0})
        with self._lock:
            self._ids.clear()


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


# ------------------------------------------------------------------------------------------ pulling


def pull_raw(subscriber: Any, subscription: str, return_immediately: bool, timeout: float
             ) -> tuple[list[RawMessage], list[str]]:
    """One synchronous pull, read from the raw protobuf (proto-plus attribute access costs ~13 us a message)."""
    resp = subscriber.pull(
        request={"subscription": subscription, "max_messages": MAX_PULL, "return_immediately": return_immediately},
        timeout=timeout,
    )
    pb = type(resp).pb(resp)
    msgs: list[RawMessage] = []
    ack_ids: list[str] = []
    for rm in pb.received_messages:
        m = rm.message
        ts = m.publish_time
        msgs.append(RawMessage(m.data, m.message_id, ts.seconds * 1_000_000_000 + ts.nanos,
                               dict(m.attributes) if m.attributes else None))
        ack_ids.append(rm.ack_id)
    return msgs, ack_ids


class _Puller(threading.Thread):
    """Pulls until a bound is hit or the subscription is empty; hands (messages, ack ids) to a bounded queue."""

    DONE = object()

    def __init__(self, subscriber: Any, subscription: str, settings: DrainSettings, leases: Leases):
        super().__init__(name="pubsub-puller", daemon=True)
        self.subscriber, self.subscription, self.settings, self.leases = subscriber, subscription, settings, leases
        # Bounded: at most ~2 batches leased ahead of the writer (memory; pulling further ahead is not faster).
        prefetch = settings.prefetch_messages
        prefetch = settings.batch_messages // 2 if prefetch is None else prefetch
        self.out: queue.Queue = queue.Queue(maxsize=max(2, prefetch // MAX_PULL))
        # never below a batch and a pull, or a batch could only be completed by the flush timeout
        self.max_leased = max(settings.max_leased or 2 * settings.batch_messages + prefetch,
                              settings.batch_messages + MAX_PULL)
        self.stop = threading.Event()
        self.pulled = 0
        self._lock = threading.Lock()
        self.reason = ""
        self.error: BaseException | None = None

    def run(self) -> None:
        # Optionally several pull loops: while the process parses and writes, a pull takes 7-20 ms instead of
        # ~2.5 ms (GIL and CPU contention with the writer and the emulator); concurrent pulls can hide part of
        # that. On the shared 2-core test machine 1, 2 and 3 loops were within noise, so the default is 1.
        deadline = time.monotonic() + self.settings.max_seconds
        helpers = [threading.Thread(target=self._loop, args=(deadline,), name=f"pubsub-puller-{i}", daemon=True)
                   for i in range(1, self.settings.pull_threads)]
        for t in helpers:
            t.start()
        self._loop(deadline)
        for t in helpers:
            t.join()
        self._put(self.DONE, force=True)

    def _loop(self, deadline: float) -> None:
        s = self.settings
        empty = 0
        try:
            while not self.stop.is_set():
                if self.pulled >= s.max_messages:  # may overshoot by (pull_threads - 1) * 100
                    self._finish(f"max_messages={s.max_messages} reached")
                    return
                if time.monotonic() >= deadline:
                    self._finish(f"max_seconds={s.max_seconds:g} reached")
                    return
                if self.leases.count() >= self.max_leased:
                    time.sleep(0.002)  # the writer acks a batch at a time; wait for it rather than lease more
                    continue
                msgs, ack_ids = pull_raw(self.subscriber, self.subscription, s.return_immediately, s.pull_timeout)
                if not msgs:
                    empty += 1
                    if empty >= s.max_empty_pulls:
                        self._finish("subscription drained")
                        return
                    continue
                empty = 0
                self.leases.add(ack_ids)
                with self._lock:
                    self.pulled += len(msgs)
                self._put((msgs, ack_ids))
        except BaseException as exc:  # surfaced by drain() in the calling thread
            self.error = exc
            self.stop.set()

    def _finish(self, reason: str) -> None:
        with self._lock:
            self.reason = self.reason or reason

    def _put(self, item: object, force: bool = False) -> None:
        while True:
            try:
                self.out.put(item, timeout=0.1)
                return
            except queue.Full:
                if self.stop.is_set() and not force:
                    return
                if self.stop.is_set():  # make room for DONE: the consumer is gone or going
                    with contextlib.suppress(queue.Empty):
                        self.out.get_nowait()


# ------------------------------------------------------------------------------------------ drain


def drain(subscriber: Any, subscription: str, warehouse: WarehouseResource,
          settings: DrainSettings = DrainSettings(), hook: Hook | None = None) -> DrainReport:
    """Drain ``subscription`` into the event tables within ``settings``' bounds. Raises on any failure,
    after giving back (nacking) every message it had not acked, so the next run starts with all of them."""
    log = get_dagster_logger()
    hook = hook or (lambda stage, batch: None)
    report = DrainReport()
    started = time.monotonic()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    with _hold(warehouse), Leases(subscriber, subscription, settings.lease_seconds) as leases, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="events-writer") as writer, \
            ThreadPoolExecutor(max_workers=settings.table_writers, thread_name_prefix="events-table") as tables:
        puller = _Puller(subscriber, subscription, settings, leases)
        puller.start()
        pending: Future | None = None
        progress = Progress(log, f"pulled from {subscription}", unit="batches")  # every 10 s in long drains
        try:
            for batch_no, (msgs, ack_ids) in enumerate(_batches(puller, settings), start=1):
                hook("pulled", batch_no)
                progress.add(len(msgs))
                t0 = time.monotonic()
                parsed = parse_batch(msgs)
                t1 = time.monotonic()
                report.seconds_parsing += t1 - t0
                hook("parsed", batch_no)
                if pending is not None:
                    pending.result()  # one write in flight: parse batch n+1 while batch n is written
                report.seconds_waiting += time.monotonic() - t1
                pending = writer.submit(_write_and_ack, subscriber, subscription, warehouse, parsed, ack_ids,
                                        leases, report, batch_no, hook,
                                        tables if settings.table_writers > 1 else None)
                gc.collect(0)
            if pending is not None:
                pending.result()
            if puller.error is not None:
                raise puller.error
        except BaseException:
            puller.stop.set()
            if pending is not None:
                with contextlib.suppress(BaseException):
                    pending.result()  # let an in-flight write finish before giving its messages back
            puller.join(timeout=settings.pull_timeout + 5)
            leases.nack_all()
            raise
        finally:
            puller.stop.set()
            report.lease_extensions = leases.extensions
            if gc_was_enabled:
                gc.enable()
        puller.join()
    report.pulled = puller.pulled
    report.stopped_because = puller.reason
    report.seconds = time.monotonic() - started
    log.info(f"drained {report.acked:,} messages in {report.batches} batches, {report.seconds:.1f}s "
             f"({report.events_per_second:,.0f}/s), {report.rejected} rejected; stopped: {report.stopped_because}")
    return report


def _hold(warehouse: WarehouseResource) -> DuckDBHold:
    """DuckDB only (a no-op elsewhere): keep the database open for the whole drain, with one DuckDB thread and
    no automatic checkpoint, and checkpoint once at the end (``DuckDBHold`` for one period). Measured:

    * open once: each write then skips re-opening the file and the checkpoint on its last close (1.75x
      faster writes). The file lock is held for the drain, bounded by ``max_seconds`` (below DuckDBWarehouse's
      lock timeout), which other writers wait out as they already do between writes;
    * one thread: DuckDB's default (one per core) competes for the CPU with the pull thread and, locally, the
      emulator; each pull then took ~2x longer, while the batch writes barely need a second thread;
    * one checkpoint: DuckDB checkpoints every 16 MB of WAL by default (~13k events here) and each one
      recompresses the tables' last, growing row groups (~5 us an event, against ~4 us for the one at the end).
      Commits still write (and fsync) the WAL, so nothing committed is less durable."""
    return DuckDBHold(warehouse, max_seconds=math.inf, memory_limit=DRAIN_MEMORY_LIMIT)


def _batches(puller: _Puller, settings: DrainSettings) -> Iterator[tuple[list[RawMessage], list[str]]]:
    """Group pulled chunks into write batches of ``batch_messages`` (or less after ``flush_seconds`` idle)."""
    msgs: list[RawMessage] = []
    ack_ids: list[str] = []
    while True:
        try:
            item = puller.out.get(timeout=settings.flush_seconds if msgs else None)
        except queue.Empty:
            item = None  # idle: flush what we have
        if item is _Puller.DONE:
            break
        if item is not None:
            msgs.extend(item[0])
            ack_ids.extend(item[1])
        if msgs and (item is None or len(msgs) >= settings.batch_messages):
            yield msgs, ack_ids
            msgs, ack_ids = [], []
    if msgs:
        yield msgs, ack_ids


def _write_and_ack(subscriber: Any, subscription: str, warehouse: WarehouseResource, parsed: ParsedBatch,
                   ack_ids: list[str], leases: Leases, report: DrainReport, batch_no: int, hook: Hook,
                   table_writers: ThreadPoolExecutor | None) -> None:
    t0 = time.monotonic()
    tables = [t for t in ALL_TABLES if not parsed.frames[t].empty]
    # Each table is its own transaction either way, so writing them concurrently changes nothing about
    # exactly-once; it overlaps their fixed costs (commit/fsync, catalog lookups: ~50 ms a write on DuckDB,
    # a network round trip elsewhere). Tables are created one at a time: concurrent DDL can conflict.
    fresh = [t for t in tables if report.tables[t].last is None]
    known = [t for t in tables if report.tables[t].last is not None]
    for table in fresh:
        _write_table(warehouse, parsed, table, report, batch_no, hook)
    if table_writers is None or len(known) < 2:
        for table in known:
            _write_table(warehouse, parsed, table, report, batch_no, hook)
    else:
        futures = [table_writers.submit(_write_table, warehouse, parsed, t, report, batch_no, hook) for t in known]
        errors = [f.exception() for f in futures]  # wait for all before raising: none may still be running
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
    hook("committed", batch_no)
    t1 = time.monotonic()
    report.seconds_writing += t1 - t0
    # Only now, with every table committed, may Pub/Sub forget these messages.
    for chunk in _chunks(ack_ids, ACK_CHUNK):
        subscriber.acknowledge(request={"subscription": subscription, "ack_ids": chunk})
    leases.release(ack_ids)
    report.seconds_acking += time.monotonic() - t1
    report.acked += len(ack_ids)
    report.batches += 1
    hook("acked", batch_no)


def _write_table(warehouse: WarehouseResource, parsed: ParsedBatch, table: str, report: DrainReport,
                 batch_no: int, hook: Hook) -> None:
    result = warehouse.write(parsed.frames[table], write_plan(table))
    totals = report.tables[table]
    totals.rows_written += result.rows_in_frame
    totals.last = result
    hook(f"written:{table}", batch_no)


def final_results(warehouse: WarehouseResource, report: DrainReport) -> dict[str, WriteResult | None]:
    """Per table, the result to report: the run's last write, else the table as it stands (None if absent)."""
    out: dict[str, WriteResult | None] = {}
    for table in ALL_TABLES:
        last = report.tables[table].last
        if last is not None:
            out[table] = WriteResult(last.fqn, last.mode, report.tables[table].rows_written, last.row_count,
                                     last.columns, last.added_columns)
            continue
        columns = warehouse.columns(table_ref(table))
        out[table] = None if columns is None else WriteResult(
            warehouse.fqn(table_ref(table)), WriteMode.MERGE, 0, warehouse.row_count(table_ref(table)), columns,
            skipped_reason="no new messages of this kind in this run; the table is unchanged")
    return out
