"""A deterministic simulated Segment workspace: every record is a pure function of (seed, size, index).

Nothing is materialised up front: a list route knows how many items it has and builds item ``i`` on demand,
so a workspace of millions of rows costs no memory in the simulator. The same functions give the tests their
truth (``expected_keys``), so tests never hard-code results.

Time-dependent objects follow the wall clock (or a frozen ``now``): usage months run up to today, and audit
event ``k`` happens at ``AUDIT_ORIGIN + k * gap``, so two simulators started at different times agree on ids
and timestamps, and new events keep appearing like in a real workspace.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable

UTC = dt.timezone.utc
AUDIT_ORIGIN = dt.datetime(2024, 1, 1, tzinfo=UTC)
AUDIT_HISTORY = dt.timedelta(days=90)
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
METRIC_NAMES = ("successes", "expired", "discarded", "retried")


@dataclass(frozen=True)
class WorkspaceSize:
    sources: int = 6
    destinations_per_source: int = 2
    warehouses: int = 3
    warehouses_per_source: int = 2
    catalog_destinations: int = 450  # more than two pages of 200: the catalog always pages (contract §4)
    catalog_sources: int = 60
    catalog_warehouses: int = 12
    users: int = 25
    groups: int = 5
    transformations: int = 7
    subscriptions_per_destination: int = 3  # only Actions destinations (even catalog index) have them
    audit_events_per_day: float = 4.0
    usage_history_months: int = 24

    def scaled(self, factor: int) -> WorkspaceSize:
        """Grow the objects that grow with a real workspace (sources and everything per source, catalogs)."""
        return replace(
            self, sources=self.sources * factor, catalog_destinations=self.catalog_destinations * factor,
            catalog_sources=self.catalog_sources * factor, users=self.users * factor,
        )


def _digest(*parts: Any) -> bytes:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).digest()


def segment_id(seed: int, kind: str, i: int) -> str:
    """A 22-character base62 id like Segment's (``qQEHquLrjRDN9j1ByrChyn``), stable per (seed, kind, i)."""
    n = int.from_bytes(_digest(seed, kind, i), "big")
    out = []
    for _ in range(22):
        n, r = divmod(n, 62)
        out.append(_B62[r])
    return "".join(out)


def _number(seed: int, *parts: Any, mod: int) -> int:
    return int.from_bytes(_digest(seed, *parts)[:8], "big") % mod


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def month_start(d: dt.date) -> dt.date:
    return d.replace(day=1)


def next_month(d: dt.date) -> dt.date:
    return (d.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


@dataclass(frozen=True)
class ListRoute:
    """An ordered collection served by a paginated route: its length and its item builder."""

    length: int
    item: Callable[[int], dict[str, Any]]


@dataclass(eq=False)  # identity hash: the per-instance caches below key on it
class Workspace:
    seed: int = 7
    size: WorkspaceSize = field(default_factory=WorkspaceSize)
    workspace_id: str = ""
    now: dt.datetime | None = None  # frozen clock for tests; None follows the wall clock

    def __post_init__(self):
        self.workspace_id = self.workspace_id or segment_id(self.seed, "workspace", 0)

    def clock(self) -> dt.datetime:
        return self.now or dt.datetime.now(UTC)

    # ------------------------------------------------------------------------------------ ids

    def source_id(self, s: int) -> str:
        return segment_id(self.seed, "source", s)

    def destination_index(self, s: int, j: int) -> int:
        return s * self.size.destinations_per_source + j

    def destination_id(self, d: int) -> str:
        return segment_id(self.seed, "destination", d)

    def warehouse_id(self, w: int) -> str:
        return segment_id(self.seed, "warehouse", w)

    def connected_warehouses(self, s: int) -> list[int]:
        n = min(self.size.warehouses_per_source, self.size.warehouses)
        return sorted({(s + k) % self.size.warehouses for k in range(n)}) if self.size.warehouses else []

    @property
    def destination_count(self) -> int:
        return self.size.sources * self.size.destinations_per_source

    def source_of_destination(self, d: int) -> int:
        return d // self.size.destinations_per_source

    def destination_catalog_index(self, d: int) -> int:
        return (d * 7) % self.size.catalog_destinations

    def is_actions_destination(self, d: int) -> bool:
        return self.destination_catalog_index(d) % 2 == 0

    # ------------------------------------------------------------------------------------ catalog items

    @staticmethod
    def _logos(slug: str) -> dict[str, Any]:
        return {"default": f"https://cdn.segment.example/{slug}/default.svg", "mark": None, "alt": None}

    @staticmethod
    def _options(kind: str) -> list[dict[str, Any]]:
        return [
            {"name": "apiKey", "type": "string", "required": True, "label": "API Key"},
            {"name": f"{kind}Region", "type": "select", "required": False, "defaultValue": "us", "label": "Region"},
        ]

    @functools.lru_cache(maxsize=4096)
    def catalog_destination(self, i: int) -> dict[str, Any]:
        slug = f"destination-{i}"
        return {
            "id": segment_id(self.seed, "catalog-destination", i),
            "name": f"Destination {i}",
            "description": f"Sends data to destination {i}.",
            "slug": slug,
            "logos": self._logos(slug),
            "options": self._options("destination"),
            "status": "PUBLIC" if i % 5 else "PUBLIC_BETA",
            "previousNames": [],
            "categories": ["Analytics"] if i % 2 else ["Email Marketing"],
            "website": f"https://destination{i}.example.com",
            "components": [{"type": "SERVER", "code": f"https://github.com/example/destination-{i}"}],
            "supportedFeatures": {"cloudModeInstances": "MULTIPLE", "replay": bool(i % 3)},
            "supportedMethods": {"pageview": True, "identify": True, "alias": False, "track": True, "group": i % 2 == 0},
            "supportedPlatforms": {"browser": True, "server": True, "mobile": i % 4 == 0},
            "actions": [],
            "presets": [],
        }

    def catalog_source(self, i: int) -> dict[str, Any]:
        slug = f"source-{i}"
        return {
            "id": segment_id(self.seed, "catalog-source", i), "name": f"Source {i}", "slug": slug,
            "description": f"Collects data from source type {i}.", "logos": self._logos(slug),
            "options": self._options("source"), "categories": ["Website"] if i % 2 else ["Server"],
            "isCloudEventSource": i % 3 == 0,
        }

    def catalog_warehouse(self, i: int) -> dict[str, Any]:
        slug = f"warehouse-{i}"
        return {
            "id": segment_id(self.seed, "catalog-warehouse", i), "name": f"Warehouse {i}", "slug": slug,
            "description": f"Warehouse type {i}.", "logos": self._logos(slug), "options": self._options("warehouse"),
        }

    # ------------------------------------------------------------------------------------ workspace items

    def source(self, s: int) -> dict[str, Any]:
        key = segment_id(self.seed, "write-key", s) + segment_id(self.seed, "write-key-2", s)[:10]
        return {
            "id": self.source_id(s), "slug": f"source_{s}", "name": f"Source {s}",
            "metadata": self.catalog_source(s % self.size.catalog_sources),
            "workspaceId": self.workspace_id, "enabled": s % 7 != 6,
            "writeKeys": [key],
            "settings": {"track": {"allowUnplannedEvents": True}, "sharedSecret": "••••••••••" + key[-4:]},
            "labels": [{"key": "environment", "value": "prod" if s % 2 == 0 else "dev"}],
        }

    def destination(self, d: int) -> dict[str, Any]:
        secret = segment_id(self.seed, "destination-secret", d)
        return {
            "id": self.destination_id(d), "name": f"Destination {d}", "enabled": d % 5 != 4,
            "metadata": self.catalog_destination(self.destination_catalog_index(d)),
            "sourceId": self.source_id(self.source_of_destination(d)),
            "settings": {"apiKey": "••••••••••" + secret[-4:], "region": "us", "sendTraits": d % 2 == 0},
        }

    def warehouse(self, w: int) -> dict[str, Any]:
        return {
            "id": self.warehouse_id(w), "metadata": self.catalog_warehouse(w % self.size.catalog_warehouses),
            "workspaceId": self.workspace_id, "enabled": True,
            "settings": {"name": f"warehouse_{w}", "hostname": f"wh{w}.example.com", "password": "••••••••••",
                         "username": f"segment_{w}"},
        }

    def subscription(self, d: int, k: int) -> dict[str, Any]:
        return {
            "id": segment_id(self.seed, "subscription", d * 1000 + k), "name": f"Subscription {k} of {d}",
            "actionId": segment_id(self.seed, "action", k), "actionSlug": f"action_{k}",
            "destinationId": self.destination_id(d), "enabled": k % 2 == 0,
            "settings": {"event_name": {"@path": "$.event"}}, "trigger": 'type = "track"',
        }

    def user(self, i: int) -> dict[str, Any]:
        return {
            "id": segment_id(self.seed, "member", i), "name": f"Member {i}", "email": f"member{i}@workspace.example",
            "permissions": [{"roleName": "Workspace Owner" if i == 0 else "Workspace Member",
                             "roleId": segment_id(self.seed, "role", 0 if i == 0 else 1), "resources": []}],
        }

    def group(self, i: int) -> dict[str, Any]:
        return {"id": segment_id(self.seed, "group", i), "name": f"Group {i}", "memberCount": (i * 3) % 11,
                "permissions": []}

    def transformation(self, i: int) -> dict[str, Any]:
        return {
            "id": segment_id(self.seed, "transformation", i), "name": f"Transformation {i}",
            "sourceId": self.source_id(i % self.size.sources), "enabled": i % 3 != 2,
            "if": f'event = "Event {i}"', "newEventName": f"Renamed {i}",
            "propertyRenames": [{"oldName": f"old_{i}", "newName": f"new_{i}"}],
        }

    # ------------------------------------------------------------------------------------ audit events

    @property
    def audit_gap(self) -> dt.timedelta:
        return dt.timedelta(days=1) / max(self.size.audit_events_per_day, 1e-9)

    def audit_range(self, start: dt.datetime | None = None, end: dt.datetime | None = None) -> range:
        """Event numbers k visible for [start, end]: at most 90 days back (contract §6), never in the future."""
        now = self.clock()
        lo = max(start or now - AUDIT_HISTORY, now - AUDIT_HISTORY)
        hi = min(end or now, now)
        gap = self.audit_gap
        first = max(0, -(-(lo - AUDIT_ORIGIN) // gap))  # ceil
        last = (hi - AUDIT_ORIGIN) // gap  # floor
        return range(first, max(first, last + 1))

    def audit_event(self, k: int) -> dict[str, Any]:
        ts = AUDIT_ORIGIN + k * self.audit_gap
        s = k % max(self.size.sources, 1)
        return {
            "id": f"events/{100_000_000 + k}", "timestamp": iso(ts).replace(".000Z", "Z"),
            "type": ("Source Modified", "Destination Created", "User Invited", "Tracking Plan Updated")[k % 4],
            "actor": f"member{k % max(self.size.users, 1)}", "actorEmail": f"member{k % max(self.size.users, 1)}@workspace.example",
            "resourceId": self.source_id(s), "resourceType": "source", "resourceName": f"Source {s}",
        }

    # ------------------------------------------------------------------------------------ delivery metrics

    def delivery_metrics(self, d: int, granularity: str, start: str, end: str) -> dict[str, Any]:
        metrics = []
        for m, name in enumerate(METRIC_NAMES):
            total = _number(self.seed, "metric", d, name, granularity, start, end, mod=10_000)
            metrics.append({
                "metricName": name, "total": total,
                "breakdown": [{"metricName": f"{name}_{part}", "value": total // 2 + (part == "b") * (total % 2)}
                              for part in ("a", "b")],
            })
        return {"sourceId": self.source_id(self.source_of_destination(d)),
                "destinationMetadataId": self.catalog_destination(self.destination_catalog_index(d))["id"],
                "metrics": metrics}

    # ------------------------------------------------------------------------------------ usage

    def usage_months(self) -> list[dt.date]:
        current = month_start(self.clock().date())
        months = [current]
        for _ in range(self.size.usage_history_months - 1):
            months.append(month_start(months[-1] - dt.timedelta(days=1)))
        return sorted(months)

    def usage_days(self, period: dt.date) -> list[dt.date]:
        """Days with a snapshot in ``period``: the whole month, or up to today for the current month."""
        if period not in set(self.usage_months()):
            return []
        today = self.clock().date()
        end = min(next_month(period), today + dt.timedelta(days=1))
        return [period + dt.timedelta(days=n) for n in range((end - period).days)]

    def _cumulative(self, what: str, period: dt.date, day_index: int, s: int | None) -> int:
        # month-to-date and monotonic: a daily rate of at least 100 plus a jitter below 50 that does not accumulate
        base = _number(self.seed, what, period, s, mod=900) + 100
        return base * (day_index + 1) + _number(self.seed, what, period, s, day_index, mod=50)

    def mtu_row(self, period: dt.date, day: int, s: int | None) -> dict[str, Any]:
        d = period + dt.timedelta(days=day)
        row: dict[str, Any] = {"sourceId": self.source_id(s)} if s is not None else {}
        start = dt.datetime.combine(period, dt.time(), UTC)
        row |= {
            "periodStart": int(start.timestamp()),
            "periodEnd": int(dt.datetime.combine(next_month(period), dt.time(), UTC).timestamp()),
            "anonymous": str(self._cumulative("anonymous", period, day, s)),
            "anonymousIdentified": str(self._cumulative("anonymousIdentified", period, day, s) // 3),
            "identified": str(self._cumulative("identified", period, day, s) * 2),
            "neverIdentified": str(self._cumulative("neverIdentified", period, day, s) // 2),
            "timestamp": iso(dt.datetime.combine(d, dt.time(), UTC)),
        }
        return row

    def api_calls_row(self, period: dt.date, day: int, s: int | None) -> dict[str, Any]:
        d = period + dt.timedelta(days=day)
        row: dict[str, Any] = {"sourceId": self.source_id(s)} if s is not None else {}
        row |= {"apiCalls": str(self._cumulative("apiCalls", period, day, s) * 1000 + 3_000_000_000),
                "timestamp": iso(dt.datetime.combine(d, dt.time(), UTC))}
        return row

    def usage_route(self, name: str, period: dt.date) -> ListRoute:
        days = len(self.usage_days(period))
        per_source = "per_source" in name
        build = self.mtu_row if "mtu" in name else self.api_calls_row
        if per_source:
            n = self.size.sources
            return ListRoute(days * n, lambda i: build(period, i // n, i % n))
        return ListRoute(days, lambda i: build(period, i, None))

    # ------------------------------------------------------------------------------------ routes

    def list_route(self, name: str, parent: int | None = None) -> ListRoute:
        """The collection behind a paginated route (usage and audit events have their own)."""
        z = self.size
        if name == "catalog_destinations":
            return ListRoute(z.catalog_destinations, self.catalog_destination)
        if name == "catalog_sources":
            return ListRoute(z.catalog_sources, self.catalog_source)
        if name == "catalog_warehouses":
            return ListRoute(z.catalog_warehouses, self.catalog_warehouse)
        if name == "destinations":
            return ListRoute(self.destination_count, self.destination)
        if name == "sources":
            return ListRoute(z.sources, self.source)
        if name == "warehouses":
            return ListRoute(z.warehouses, self.warehouse)
        if name == "users":
            return ListRoute(z.users, self.user)
        if name == "groups":
            return ListRoute(z.groups, self.group)
        if name == "transformations":
            return ListRoute(z.transformations, self.transformation)
        if name == "source_connected_destinations":
            assert parent is not None
            base = self.destination_index(parent, 0)
            return ListRoute(z.destinations_per_source, lambda j: self.destination(base + j))
        if name == "source_connected_warehouses":
            assert parent is not None
            ws = self.connected_warehouses(parent)
            return ListRoute(len(ws), lambda j: self.warehouse(ws[j]))
        if name == "destination_subscriptions":
            assert parent is not None
            n = z.subscriptions_per_destination if self.is_actions_destination(parent) else 0
            return ListRoute(n, lambda k: self.subscription(parent, k))
        raise KeyError(name)

    def find_source(self, source_id: str) -> int | None:
        return self._source_index().get(source_id)

    def find_destination(self, destination_id: str) -> int | None:
        return self._destination_index().get(destination_id)

    @functools.cache
    def _source_index(self) -> dict[str, int]:
        return {self.source_id(s): s for s in range(self.size.sources)}

    @functools.cache
    def _destination_index(self) -> dict[str, int]:
        return {self.destination_id(d): d for d in range(self.destination_count)}

    # ------------------------------------------------------------------------------------ truth for tests

    def expected_keys(self, name: str, *, period: dt.date | None = None, start: dt.datetime | None = None,
                      end: dt.datetime | None = None, window: tuple[str, str, str] | None = None) -> set[tuple]:
        """Primary-key tuples (as the loaded table spells them, strings) an object must have."""
        if name.startswith("usage_"):
            assert period is not None, "usage objects need a period"
            route = self.usage_route(name, period)
            items = (route.item(i) for i in range(route.length))
            if "per_source" in name:
                return {(r["sourceId"], r["timestamp"]) for r in items}
            return {(r["timestamp"],) for r in items}
        if name == "audit_events":
            return {(self.audit_event(k)["id"],) for k in self.audit_range(start, end)}
        if name == "destination_delivery_metrics_summary":
            assert window is not None, "delivery metrics need (granularity, startTime, endTime)"
            g, s, e = window
            return {(self.destination_id(d), self.source_id(self.source_of_destination(d)), g, s, e, m)
                    for d in range(self.destination_count) for m in METRIC_NAMES}
        if name == "source_connected_destinations":
            return {(self.destination(self.destination_index(s, j))["id"], self.source_id(s))
                    for s in range(self.size.sources) for j in range(self.size.destinations_per_source)}
        if name == "source_connected_warehouses":
            return {(self.source_id(s), self.warehouse_id(w)) for s in range(self.size.sources)
                    for w in self.connected_warehouses(s)}
        if name == "destination_subscriptions":
            return {(self.subscription(d, k)["id"],) for d in range(self.destination_count)
                    for k in range(self.list_route(name, d).length)}
        route = self.list_route(name)
        if name == "destinations":
            return {(route.item(i)["id"], route.item(i)["sourceId"]) for i in range(route.length)}
        return {(route.item(i)["id"],) for i in range(route.length)}
