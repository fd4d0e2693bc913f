"""Segment events from Pub/Sub: end-to-end loader vs the emulator's raw pull+ack ceiling vs a naive consumer.

    python benchmarks/events_bench.py [--events 100000] [--runs 3] [--naive-sample 5000]

One fresh emulator; one topic with one subscription per contender run, created before a single publish, so
every contender reads an identical copy of the same messages from the same emulator. Runs alternate
(ceiling, loader, ceiling, loader, ...) so machine noise hits both alike; medians and spread are printed.

* ceiling: synchronous ``pull`` (100 per call, raw protobuf) + ``acknowledge`` in one thread, nothing else;
* loader: ``cdp_assets.events.loader.drain`` into a fresh DuckDB file: pull -> parse -> 7 merged tables ->
  ack after commit (the production path, default settings);
* naive: the reference tutorial's shape (one INSERT per event, auto-committed, proto-plus messages, JSON text
  columns), run on ``--naive-sample`` events and reported as a rate (it is per-event bound, so it scales
  linearly; 100k events would take minutes).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402
import orjson  # noqa: E402

from cdp_assets.events import emulator  # noqa: E402
from cdp_assets.events.loader import ACK_CHUNK, DrainSettings, drain, pull_raw  # noqa: E402
from cdp_assets.events.simulator import SegmentEventFactory, publish  # noqa: E402
from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse  # noqa: E402


def ceiling(subscriber, subscription: str) -> tuple[int, float]:
    n, started = 0, time.perf_counter()
    while True:
        msgs, ack_ids = pull_raw(subscriber, subscription, return_immediately=True, timeout=30)
        if not msgs:
            break
        subscriber.acknowledge(request={"subscription": subscription, "ack_ids": ack_ids})
        n += len(msgs)
    return n, time.perf_counter() - started


def loader(subscriber, subscription: str, workdir: Path, run: int) -> tuple[int, float, dict]:
    wh = DuckDBWarehouse(database=str(workdir / f"loader-{run}.duckdb"))
    started = time.perf_counter()
    report = drain(subscriber, subscription, wh, DrainSettings(max_seconds=600))
    elapsed = time.perf_counter() - started
    detail = {"parse_s": round(report.seconds_parsing, 2), "write_s": round(report.seconds_writing, 2),
              "ack_s": round(report.seconds_acking, 2), "wait_for_writer_s": round(report.seconds_waiting, 2),
              "batches": report.batches}
    return report.acked, elapsed, detail


NAIVE_TABLES = {"track": ("tracks", "event"), "page": ("pages", "name"), "screen": ("screens", "name"),
                "group": ("groups", "groupId"), "identify": ("identifies", None), "alias": ("aliases", "previousId")}


def naive(subscriber, subscription: str, workdir: Path, sample: int) -> tuple[int, float]:
    """One auto-committed INSERT per event, like the tutorial's push handler (plus an ack per pull)."""
    con = duckdb.connect(str(workdir / "naive.duckdb"))
    for table, _ in NAIVE_TABLES.values():
        con.execute(f"CREATE TABLE {table} (id VARCHAR, received_at TIMESTAMPTZ, sent_at TIMESTAMPTZ, "
                    "user_id VARCHAR, body JSON, extra VARCHAR, email VARCHAR)")
    n, started = 0, time.perf_counter()
    while n < sample:
        resp = subscriber.pull(request={"subscription": subscription, "max_messages": 100,
                                        "return_immediately": True})
        if not resp.received_messages:
            break
        for rm in resp.received_messages:  # proto-plus access, as a straightforward consumer writes it
            event = json.loads(rm.message.data)
            table, extra = NAIVE_TABLES[event["type"]]
            body = event.get("traits") if event["type"] in ("identify", "group") else event.get("properties")
            con.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [event["messageId"], rm.message.publish_time, event.get("timestamp"), event.get("userId"),
                         json.dumps(body), event.get(extra) if extra else None, event.get("email")])
            n += 1
        subscriber.acknowledge(request={"subscription": subscription,
                                        "ack_ids": [rm.ack_id for rm in resp.received_messages]})
    elapsed = time.perf_counter() - started
    con.close()
    return n, elapsed


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):>9,.0f}/s  (min {min(values):,.0f}, max {max(values):,.0f}, n={len(values)})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--naive-sample", type=int, default=5_000)
    args = ap.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="events-bench-"))
    emu = emulator.start(project="bench", log_dir=workdir)
    try:
        address = emu.address
        names = [f"{kind}-{i}" for i in range(args.runs) for kind in ("ceiling", "loader")] + ["naive-0"]
        topic = None
        for name in names:
            topic, _ = emulator.ensure_topic_and_subscription(address, "bench", "bench-events", name, 60)
        publisher = emulator.publisher_client(address)
        factory = SegmentEventFactory(seed=2026, users=100_000)
        payloads = list(factory.payloads(args.events))
        size = sum(map(len, payloads)) / len(payloads)
        t0 = time.perf_counter()
        for i in range(0, len(payloads), 10_000):
            publish(publisher, topic, payloads[i:i + 10_000])
        publish_s = time.perf_counter() - t0
        print(f"published {args.events:,} events of {size:,.0f} B on average in {publish_s:.1f}s "
              f"({args.events / publish_s:,.0f}/s) to {len(names)} subscriptions (one copy each)")
        del payloads

        subscriber = emulator.subscriber_client(address)
        sub = lambda name: f"projects/bench/subscriptions/{name}"  # noqa: E731
        # Warm-up: JIT of the emulator and imports, on a separate small topic.
        wtopic, wsub = emulator.ensure_topic_and_subscription(address, "bench", "warmup", "warmup-sub", 60)
        publish(publisher, wtopic, (orjson.dumps(factory.event(i)) for i in range(2_000)))
        ceiling(subscriber, wsub)

        rates: dict[str, list[float]] = {"ceiling": [], "loader": []}
        for i in range(args.runs):
            n, s = ceiling(subscriber, sub(f"ceiling-{i}"))
            rates["ceiling"].append(n / s)
            print(f"  run {i + 1}: ceiling (raw pull+ack)   {n:>7,} msgs in {s:6.2f}s = {n / s:>9,.0f}/s")
            n, s, detail = loader(subscriber, sub(f"loader-{i}"), workdir, i)
            rates["loader"].append(n / s)
            print(f"  run {i + 1}: loader (pull->tables->ack) {n:>7,} msgs in {s:6.2f}s = {n / s:>9,.0f}/s  {detail}")
        n, s = naive(subscriber, sub("naive-0"), workdir, args.naive_sample)
        naive_rate = n / s
        print(f"  naive (1 insert/event), sample of {n:,}: {s:.2f}s = {naive_rate:,.0f}/s "
              f"(extrapolated to {args.events:,}: {args.events / naive_rate:,.0f}s)")

        ceil_m, load_m = statistics.median(rates["ceiling"]), statistics.median(rates["loader"])
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print()
        print(f"ceiling  raw pull+ack      {spread(rates['ceiling'])}")
        print(f"loader   pull->tables->ack {spread(rates['loader'])}   ratio to ceiling {load_m / ceil_m:.2f} "
              "(target >= 0.70)")
        print(f"naive    1 insert/event    {naive_rate:>16,.0f}/s   ratio to ceiling {naive_rate / ceil_m:.3f}; "
              f"loader is {load_m / naive_rate:,.0f}x the naive consumer")
        print(f"peak RSS of this process (publisher, all contenders): {peak_mb:,.0f} MB")
    finally:
        emulator.stop(emu)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
