"""Segment events from Pub/Sub: end-to-end loader vs the emulator's raw pull+ack ceiling vs a naive consumer.

    python benchmarks/events_bench.py [--events 100000] [--runs 3] [--naive-sample 5000] [--warmup-pairs 1]

One fresh emulator; one topic with one subscription per contender run, created before a single publish, so
every contender reads an identical copy of the same messages from the same emulator. Each contender runs in
its own fresh subprocess (imports done before the clock starts), so its CPU time and peak memory are its own.
Runs alternate (ceiling, lease floor, loader, ceiling, ...) so machine noise hits both alike; medians and spread
are printed, and every loader figure is a ratio to the ceiling of the same run.

* warm-up: ``--warmup-pairs`` discarded rounds (ceiling, floor, loader) of the full size first. The emulator's JVM keeps
  getting faster for its first ~100k messages (a 2,000-message warm-up left the ceiling climbing 18.7k ->
  28.4k -> 45.2k run over run), which would bias the ratio of the first pairs;
* ceiling: synchronous ``pull`` (100 per call, raw protobuf) + ``acknowledge`` in one thread, nothing else;
* lease floor: the same pull+ack, but each pull's messages stay leased until a batch of the loader's size
  (``--batch``, its default 10,000) has been pulled, then the batch is acked: the loader's lease pattern with
  free parsing and writing, i.e. the rate any consumer that acks only after writing a batch can reach against
  this emulator. While any message is leased, each of the emulator's pulls copies the whole undelivered
  backlog (see ``cdp_assets/events/loader.py``), so pulls cost ~2x the time and 2-4x the emulator's CPU a
  message; this, not the ceiling, bounds an ack-after-commit loader here;
* loader: ``cdp_assets.events.loader.drain`` into a fresh DuckDB file: pull -> parse -> 7 merged tables ->
  ack after commit (the production path, default settings except the bound: ``max_messages=--events``);
* naive: the reference tutorial's shape (one INSERT per event, auto-committed, proto-plus messages, JSON text
  columns), run on ``--naive-sample`` events and reported as a rate (it is per-event bound, so it scales
  linearly; 100k events would take minutes).

Per run it also prints the contender's own CPU (user+sys of its process, per message), the emulator's CPU
(its process group, read from /proc) and, for the loader, its drain-phase breakdown, and the peak RSS of the
contender's process (VmHWM) with how much of it the run added on top of the imports.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------------- measuring


def group_cpu_seconds(pgid: int | None) -> float:
    """user+sys CPU of every live process in process group ``pgid`` (the emulator: gcloud wrapper + JVM)."""
    if not pgid:
        return 0.0
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------------------------------------- contenders


def ceiling(subscriber, subscription: str, events: int) -> dict:
    from cdp_assets.events.loader import pull_raw

    n = 0
    while True:
        msgs, ack_ids = pull_raw(subscriber, subscription, return_immediately=True, timeout=30)
        if not msgs:
            break
        subscriber.acknowledge(request={"subscription": subscription, "ack_ids": ack_ids})
        n += len(msgs)
    return {"messages": n}


def lease_floor(subscriber, subscription: str, events: int, batch: int) -> dict:
    from cdp_assets.events.loader import ACK_CHUNK, pull_raw

    n, leased = 0, []
    while True:
        msgs, ack_ids = pull_raw(subscriber, subscription, return_immediately=True, timeout=30)
        leased.extend(ack_ids)
        if leased and (not msgs or len(leased) >= batch):
            for i in range(0, len(leased), ACK_CHUNK):
                subscriber.acknowledge(request={"subscription": subscription, "ack_ids": leased[i:i + ACK_CHUNK]})
            n += len(leased)
            leased = []
        if not msgs:
            break
    return {"messages": n}


def loader(subscriber, subscription: str, events: int, db: str, overrides: dict | None = None) -> dict:
    from cdp_assets.events.loader import DrainSettings, drain
    from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse

    wh = DuckDBWarehouse(database=db)
    settings = DrainSettings(**{"max_seconds": 600, "max_messages": max(events, 1), **(overrides or {})})
    report = drain(subscriber, subscription, wh, settings)
    return {"messages": report.acked, "detail": {
        "parse_s": round(report.seconds_parsing, 2), "write_s": round(report.seconds_writing, 2),
        "ack_s": round(report.seconds_acking, 2), "wait_for_writer_s": round(report.seconds_waiting, 2),
        "batches": report.batches, "stopped": report.stopped_because}}


NAIVE_TABLES = {"track": ("tracks", "event"), "page": ("pages", "name"), "screen": ("screens", "name"),
                "group": ("groups", "groupId"), "identify": ("identifies", None), "alias": ("aliases", "previousId")}


def naive(subscriber, subscription: str, events: int, db: str) -> dict:
    """One auto-committed INSERT per event, like the tutorial's push handler (plus an ack per pull)."""
    import duckdb

    con = duckdb.connect(db)
    for table, _ in NAIVE_TABLES.values():
        con.execute(f"CREATE TABLE {table} (id VARCHAR, received_at TIMESTAMPTZ, sent_at TIMESTAMPTZ, "
                    "user_id VARCHAR, body JSON, extra VARCHAR, email VARCHAR)")
    n = 0
    while n < events:
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
    con.close()
    return {"messages": n}


def child(args: argparse.Namespace) -> None:
    """Run one contender in this (fresh) process and print one RESULT line of JSON."""
    from cdp_assets.events import emulator

    subscriber = emulator.subscriber_client(args.address)
    import cdp_assets.events.loader  # noqa: F401  (imports before the clock, like a running code server)
    import cdp_assets.shared.warehouse.duckdb  # noqa: F401

    rss_before = _status_mb("VmRSS")
    emu0, cpu0 = group_cpu_seconds(args.emulator_pgid), os.times()
    started = time.perf_counter()
    if args.child == "ceiling":
        out = ceiling(subscriber, args.subscription, args.events)
    elif args.child == "floor":
        out = lease_floor(subscriber, args.subscription, args.events, args.batch)
    elif args.child == "loader":
        out = loader(subscriber, args.subscription, args.events, args.db, json.loads(args.drain_settings))
    else:
        out = naive(subscriber, args.subscription, args.events, args.db)
    seconds = time.perf_counter() - started
    cpu1, emu1 = os.times(), group_cpu_seconds(args.emulator_pgid)
    out.update(seconds=seconds, cpu_s=(cpu1.user - cpu0.user) + (cpu1.system - cpu0.system), emulator_cpu_s=emu1 - emu0,
               peak_mb=_status_mb("VmHWM"), rss_before_mb=rss_before, load=os.getloadavg()[0])
    subscriber.close()
    print("RESULT " + json.dumps(out), flush=True)


# ---------------------------------------------------------------------------------------------- driver


def run_child(kind: str, address: str, subscription: str, events: int, db: str, pgid: int | None,
              drain_settings: str = "{}", batch: int = 10_000) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--address", address, "--subscription", subscription,
           "--events", str(events), "--db", db, "--emulator-pgid", str(pgid or 0), "--drain-settings", drain_settings,
           "--batch", str(batch)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} contender failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def describe(kind: str, r: dict) -> str:
    n = max(r["messages"], 1)
    rate = r["messages"] / r["seconds"]
    text = (f"{kind:<8} {r['messages']:>7,} msgs in {r['seconds']:6.2f}s = {rate:>8,.0f}/s  "
            f"cpu {r['cpu_s'] / n * 1e6:5.1f} us/msg, emulator {r['emulator_cpu_s'] / n * 1e6:5.1f} us/msg, "
            f"peak RSS {r['peak_mb']:,.0f} MB (+{r['peak_mb'] - r['rss_before_mb']:,.0f} over imports), "
            f"load {r['load']:.1f}")
    if "detail" in r:
        text += f"\n{'':<10}{r['detail']}"
    return text


def spread(values: list[float]) -> str:
    return (f"median {statistics.median(values):>9,.0f}/s  (min {min(values):,.0f}, max {max(values):,.0f}, "
            f"n={len(values)})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--naive-sample", type=int, default=5_000)
    ap.add_argument("--warmup-pairs", type=int, default=1, help="discarded rounds of all contenders, full size")
    ap.add_argument("--drain-settings", default="{}",
                    help='loader DrainSettings overrides as JSON, e.g. \'{"batch_messages": 5000}\'')
    ap.add_argument("--child", choices=["ceiling", "floor", "loader", "naive"], help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--address", help=argparse.SUPPRESS)
    ap.add_argument("--subscription", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--emulator-pgid", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.batch is None:  # the lease floor holds what the loader holds: a batch of its size
        from cdp_assets.events.loader import DrainSettings

        args.batch = json.loads(args.drain_settings).get("batch_messages", DrainSettings.batch_messages)
    if args.child:
        child(args)
        return 0

    from cdp_assets.events import emulator
    from cdp_assets.events.simulator import SegmentEventFactory, publish

    workdir = Path(tempfile.mkdtemp(prefix="events-bench-"))
    emu = emulator.start(project="bench", log_dir=workdir)
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    try:
        address = emu.address
        pairs = [f"warmup-{i}" for i in range(args.warmup_pairs)] + [f"run-{i}" for i in range(args.runs)]
        kinds = ("ceiling", "floor", "loader")
        names = [f"{kind}-{p}" for p in pairs for kind in kinds] + ["naive-0"]
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

        sub = lambda name: f"projects/bench/subscriptions/{name}"  # noqa: E731
        rates: dict[str, list[float]] = {kind: [] for kind in kinds}
        ratios: list[float] = []
        floor_ratios: list[float] = []
        for pair in pairs:
            warm = pair.startswith("warmup")
            results = {}
            for kind in kinds:
                r = run_child(kind, address, sub(f"{kind}-{pair}"), args.events,
                              str(workdir / f"{kind}-{pair}.duckdb"), emu.pid, args.drain_settings, args.batch)
                results[kind] = r
                print(f"  {pair + (' (discarded)' if warm else ''):<20} {describe(kind, r)}", flush=True)
            if not warm:
                for kind, r in results.items():
                    rates[kind].append(r["messages"] / r["seconds"])
                ratios.append(rates["loader"][-1] / rates["ceiling"][-1])
                floor_ratios.append(rates["floor"][-1] / rates["ceiling"][-1])
        r = run_child("naive", address, sub("naive-0"), args.naive_sample, str(workdir / "naive.duckdb"), emu.pid)
        naive_rate = r["messages"] / r["seconds"]
        print(f"  naive (1 insert/event), sample of {r['messages']:,}: {r['seconds']:.2f}s = {naive_rate:,.0f}/s "
              f"(extrapolated to {args.events:,}: {args.events / naive_rate:,.0f}s)")

        ceil_m, load_m = statistics.median(rates["ceiling"]), statistics.median(rates["loader"])
        floor_m = statistics.median(rates["floor"])
        print()
        print(f"ceiling  raw pull+ack      {spread(rates['ceiling'])}")
        print(f"floor    pull, hold {args.batch:,}, ack {spread(rates['floor'])}   ratio of medians {floor_m / ceil_m:.2f} "
              f"(per pair {', '.join(f'{x:.2f}' for x in floor_ratios)}): an ack-after-write loader's bound here")
        print(f"loader   pull->tables->ack {spread(rates['loader'])}   ratio of medians {load_m / ceil_m:.2f} "
              "(target >= 0.70)")
        print(f"         per-pair ratios {', '.join(f'{x:.2f}' for x in ratios)} "
              f"(median {statistics.median(ratios):.2f}); of the lease floor {load_m / floor_m:.2f}")
        print(f"naive    1 insert/event    {naive_rate:>16,.0f}/s   ratio to ceiling {naive_rate / ceil_m:.3f}; "
              f"loader is {load_m / naive_rate:,.0f}x the naive consumer")
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
    finally:
        emulator.stop(emu)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
