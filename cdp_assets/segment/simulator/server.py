"""The simulated Segment Public API over HTTP on loopback: routes from the catalog, data from ``Workspace``.

Behaves like the contract says the real API does (``segment.md``): Bearer auth, one workspace per region (the
other region's host answers 401), opaque cursors, ``pagination.count`` (or the spec's ``pagination[count]``)
up to 1000, ``data.pagination.next`` missing on the last page, rate-limit headers on every success
(``X-RateLimit-Reset`` as an RFC 5322 date), 429 with ``msBeforeNext`` (or the spec's example body), 403 for
objects the workspace is not entitled to, 422 for a missing required parameter or an out-of-range window.

Faults are injected on demand (``faults.inject``) so tests can make every endpoint misbehave exactly once,
deterministically: ``429``, ``503``, ``drop`` (connection closed without a response), ``truncate`` (half a
body), ``slow`` (late response), ``loop`` (a page whose ``next`` repeats its own cursor).
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import email.utils
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable
from urllib.parse import parse_qsl, urlsplit

import orjson

from ..catalog import CATALOG, Kind, SegmentObject
from .workspace import UTC, Workspace, iso, month_start

REGIONS = ("us", "eu")
MEDIA_TYPES = {
    "application/json", "application/vnd.segment.v1+json", "application/vnd.segment.v1beta+json",
    "application/vnd.segment.v1alpha+json",
}
#: delivery-metrics window limits of the current API (contracts README drift item 3): (max range, max look-back)
WINDOW_LIMITS = {
    "MINUTE": (dt.timedelta(hours=4), dt.timedelta(hours=48)),
    "HOUR": (dt.timedelta(days=7), dt.timedelta(days=7)),
    "DAY": (dt.timedelta(days=14), dt.timedelta(days=14)),
}
FAULT_KINDS = ("429", "503", "drop", "truncate", "slow", "loop")


@dataclass
class SimConfig:
    token: str = "sim-token"
    home_region: str = "us"
    rate_limit: int = 10_000  # requests per window, for the whole workspace
    rate_window_seconds: float = 60.0
    forbidden: frozenset[str] = frozenset()  # object names answering 403 (not entitled)
    slow_seconds: float = 0.3
    max_count: int = 1000
    #: keep this many built pages of the time-independent routes (benchmarks: a warm-up fills it, so the
    #: measured runs see the client's speed, not the simulator's record generation); 0 = off
    page_cache: int = 0


@dataclass
class SimStats:
    requests: int = 0
    by_object: collections.Counter = field(default_factory=collections.Counter)
    rate_limited: int = 0
    faults: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class FaultPlan:
    """Queues of faults per object name (``"*"`` for any); each request pops at most one."""

    def __init__(self):
        self._queues: dict[str, collections.deque[str]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def inject(self, objects: str | Iterable[str], *kinds: str) -> None:
        for kind in kinds:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        with self._lock:
            for name in [objects] if isinstance(objects, str) else objects:
                self._queues[name].extend(kinds)

    def pop(self, name: str) -> str | None:
        with self._lock:
            for key in (name, "*"):
                if self._queues.get(key):
                    return self._queues[key].popleft()
        return None

    def pending(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._queues.values())


class _RateLimiter:
    """A fixed window per workspace, like Segment's documented headers describe."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self._start = time.time()
        self._used = 0
        self._lock = threading.Lock()

    def take(self) -> tuple[bool, int, int, float]:
        """(allowed, consumed, remaining, reset epoch seconds)."""
        with self._lock:
            now = time.time()
            if now >= self._start + self.window:
                self._start, self._used = now, 0
            reset = self._start + self.window
            if self._used >= self.limit:
                return False, self._used, 0, reset
            self._used += 1
            return True, self._used, self.limit - self._used, reset


def _route_table() -> list[tuple[re.Pattern[str], SegmentObject]]:
    table = []
    for obj in CATALOG:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", obj.path)
        table.append((re.compile(f"^{pattern}/?$"), obj))
    return table


_ROUTES = _route_table()


class Reply(Exception):
    """Raised inside a handler to answer with an error status."""

    def __init__(self, status: int, error_type: str, message: str, data: Any = None, headers: dict | None = None):
        super().__init__(message)
        body: dict[str, Any] = {"type": error_type, "message": message}
        if data is not None:
            body["data"] = data
        self.status, self.body, self.headers = status, {"errors": [body]}, headers or {}


def encode_cursor(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except Exception:
        raise Reply(422, "ValidationError", "pagination.cursor is not a valid cursor", {"field": "pagination.cursor"}) from None


def _parse_time(value: str, field_name: str) -> dt.datetime:
    try:
        ts = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Reply(422, "ValidationError", f"{field_name} is not an ISO-8601 time") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


class SegmentSimulator:
    """Serves one workspace on two loopback listeners (US and EU hosts)."""

    def __init__(self, workspace: Workspace | None = None, config: SimConfig | None = None):
        self.workspace = workspace or Workspace()
        self.config = config or SimConfig()
        self.faults = FaultPlan()
        self.stats = SimStats()
        self.limiter = _RateLimiter(self.config.rate_limit, self.config.rate_window_seconds)
        self._servers: dict[str, ThreadingHTTPServer] = {}
        self._threads: list[threading.Thread] = []
        self._rate_limit_replies = 0
        self._pages: collections.OrderedDict[tuple, dict[str, Any]] = collections.OrderedDict()
        self._pages_lock = threading.Lock()

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self, host: str = "127.0.0.1", ports: dict[str, int] | None = None) -> SegmentSimulator:
        for region in REGIONS:
            server = ThreadingHTTPServer((host, (ports or {}).get(region, 0)), _handler_for(self, region))
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, name=f"segment-sim-{region}", daemon=True)
            thread.start()
            self._servers[region] = server
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def __enter__(self) -> SegmentSimulator:
        return self.start() if not self._servers else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def urls(self) -> dict[str, str]:
        return {r: f"http://{s.server_address[0]}:{s.server_address[1]}" for r, s in self._servers.items()}

    @property
    def url(self) -> str:
        """Base URL of the workspace's home region."""
        return self.urls[self.config.home_region]

    # ------------------------------------------------------------------------------------ request handling

    def handle(self, region: str, path: str, query: dict[str, str], headers: Any) -> tuple[int, dict[str, str], Any, str | None]:
        """(status, headers, JSON body, fault) for one GET; the HTTP layer applies transport faults."""
        if headers.get("Authorization") != f"Bearer {self.config.token}" or region != self.config.home_region:
            raise Reply(401, "Unauthorized", "token is missing, invalid, or not valid for this region's host")
        obj, path_params = self._route(path)
        with self.stats.lock:
            self.stats.by_object[obj.name] += 1
        fault = self.faults.pop(obj.name)
        if fault:
            with self.stats.lock:
                self.stats.faults += 1
        if fault == "429":
            raise self._too_many(time.time() + 0.05, consumed=self.config.rate_limit)
        if fault == "503":
            raise Reply(503, "ServiceUnavailable", "injected server error")
        allowed, consumed, remaining, reset = self.limiter.take()
        if not allowed:
            raise self._too_many(reset, consumed)
        if obj.name in self.config.forbidden:
            raise Reply(403, "Forbidden", f"this workspace is not entitled to {obj.path}")
        data = self._cached_data(obj, path_params, query, loop=fault == "loop")
        out_headers = {
            "X-RateLimit-Consumed": str(consumed),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": email.utils.formatdate(reset, usegmt=True),
        }
        return 200, out_headers, {"data": data}, fault

    def _too_many(self, reset: float, consumed: int) -> Reply:
        with self.stats.lock:
            self.stats.rate_limited += 1
            self._rate_limit_replies += 1
            documented = self._rate_limit_replies % 2 == 1
        headers = {"X-RateLimit-Reset": email.utils.formatdate(reset, usegmt=True), "X-RateLimit-Remaining": "0"}
        wait_ms = max(1, int((reset - time.time()) * 1000))
        if documented:  # the Rate-Limits page's body
            return Reply(429, "RequestError", "Too many requests",
                         {"remainingPoints": 0, "msBeforeNext": wait_ms, "consumedPoints": consumed}, headers)
        return Reply(429, "RateLimited", "Rate limit exceeded", None, headers)  # the saved spec's example

    def _route(self, path: str) -> tuple[SegmentObject, dict[str, str]]:
        for pattern, obj in _ROUTES:
            m = pattern.match(path)
            if m:
                return obj, m.groupdict()
        raise Reply(404, "NotFound", f"no route for {path}")

    def _page_args(self, query: dict[str, str]) -> tuple[int, dict[str, Any] | None]:
        raw = query.get("pagination.count", query.get("pagination[count]", "200"))
        try:
            count = int(raw)
        except ValueError:
            count = -1
        if not 1 <= count <= self.config.max_count:
            raise Reply(422, "ValidationError", f"pagination.count must be 1-{self.config.max_count}",
                        {"field": "pagination.count"})
        cursor = query.get("pagination.cursor", query.get("pagination[cursor]"))
        return count, decode_cursor(cursor) if cursor else None

    def _cached_data(self, obj: SegmentObject, params: dict[str, str], query: dict[str, str], loop: bool) -> dict[str, Any]:
        if not self.config.page_cache or loop or obj.kind in (Kind.AUDIT, Kind.METRICS):
            return self._data(obj, params, query, loop)
        key = (obj.name, tuple(sorted(params.items())), tuple(sorted(query.items())))
        with self._pages_lock:
            hit = self._pages.get(key)
            if hit is not None:
                self._pages.move_to_end(key)
                return hit
        data = self._data(obj, params, query, loop)
        with self._pages_lock:
            self._pages[key] = data
            while len(self._pages) > self.config.page_cache:
                self._pages.popitem(last=False)
        return data

    def _data(self, obj: SegmentObject, params: dict[str, str], query: dict[str, str], loop: bool) -> dict[str, Any]:
        ws = self.workspace
        if obj.kind is Kind.METRICS:
            return {obj.records: self._metrics(params["destinationId"], query)}
        count, cursor = self._page_args(query)
        offset = int(cursor["o"]) if cursor else 0
        state: dict[str, Any] = {}
        if obj.kind is Kind.USAGE:
            period = query.get("period")
            if not period:
                raise Reply(422, "ValidationError", "period is required", {"field": "period"})
            try:
                month = month_start(dt.date.fromisoformat(period[:10]))
            except ValueError:
                raise Reply(422, "ValidationError", "period is not an ISO-8601 date", {"field": "period"}) from None
            route = ws.usage_route(obj.name, month)
            length, item = route.length, route.item
        elif obj.kind is Kind.AUDIT:
            # the first page fixes the window's end; later pages carry it in the cursor (contract §3, §6)
            end = _parse_time(cursor["e"], "cursor") if cursor else (
                _parse_time(query["endTime"], "endTime") if query.get("endTime") else ws.clock())
            start = _parse_time(query["startTime"], "startTime") if query.get("startTime") else None
            events = ws.audit_range(start, end)
            length, item = len(events), (lambda i: ws.audit_event(events[i]))
            state["e"] = iso(end)
        else:
            parent = None
            if obj.parent == "sources":
                parent = ws.find_source(params["sourceId"])
            elif obj.parent == "destinations":
                parent = ws.find_destination(params["destinationId"])
            if obj.parent and parent is None:
                raise Reply(404, "NotFound", f"{obj.parent[:-1]} {next(iter(params.values()))} not found")
            route = ws.list_route(obj.name, parent)
            length, item = route.length, route.item
        end_at = min(offset + count, length)
        records = [item(i) for i in range(offset, end_at)]
        current = encode_cursor({"o": offset, **state})
        pagination: dict[str, Any] = {"current": current, "totalEntries": length}
        if loop:
            pagination["next"] = current  # a misbehaving server: the client must refuse to go round in circles
        elif end_at < length:
            pagination["next"] = encode_cursor({"o": end_at, **state})
        if offset:
            pagination["previous"] = encode_cursor({"o": max(0, offset - count), **state})
        return {obj.records: records, "pagination": pagination}

    def _metrics(self, destination_id: str, query: dict[str, str]) -> dict[str, Any]:
        ws = self.workspace
        d = ws.find_destination(destination_id)
        if d is None:
            raise Reply(404, "NotFound", f"destination {destination_id} not found")
        source_id = query.get("sourceId")
        if not source_id:
            raise Reply(422, "ValidationError", "sourceId is required", {"field": "sourceId"})
        granularity = query.get("granularity", "MINUTE")
        if granularity not in WINDOW_LIMITS:
            raise Reply(422, "ValidationError", "granularity must be DAY, HOUR or MINUTE", {"field": "granularity"})
        now = ws.clock()
        max_range, max_back = WINDOW_LIMITS[granularity]
        end = _parse_time(query["endTime"], "endTime") if query.get("endTime") else now
        start = _parse_time(query["startTime"], "startTime") if query.get("startTime") else end - dt.timedelta(hours=1)
        if end - start > max_range or start < now - max_back or start >= end:
            raise Reply(422, "ValidationError",
                        f"window {iso(start)}..{iso(end)} exceeds the {granularity} limits "
                        f"(range {max_range}, look-back {max_back})", {"field": "startTime"})
        return ws.delivery_metrics(d, granularity, query.get("startTime", iso(start)), query.get("endTime", iso(end)))


def _handler_for(sim: SegmentSimulator, region: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections like against the real API
        disable_nagle_algorithm = True  # headers and body go out in two writes; Nagle would delay the second

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks read stdout
            pass

        def do_GET(self) -> None:
            with sim.stats.lock:
                sim.stats.requests += 1
                sim.stats.in_flight += 1
                sim.stats.max_in_flight = max(sim.stats.max_in_flight, sim.stats.in_flight)
            try:
                self._serve()
            finally:
                with sim.stats.lock:
                    sim.stats.in_flight -= 1

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            fault = None
            try:
                status, headers, body, fault = sim.handle(region, parts.path, query, self.headers)
            except Reply as reply:
                status, headers, body = reply.status, reply.headers, reply.body
            if fault == "drop":
                self.close_connection = True  # no response at all: the client sees a dropped connection
                return
            if fault == "slow":
                time.sleep(sim.config.slow_seconds)
            payload = orjson.dumps(body)
            if fault == "truncate":
                payload = payload[: len(payload) // 2]
            accept = self.headers.get("Accept", "application/json")
            content_type = accept if status == 200 and accept in MEDIA_TYPES else "application/json"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

    return Handler
