"""The simulated Intercom workspace: deterministic state, the API's query semantics, mutations and the truth.

State is kept compact (a few parallel lists and small per-record override dicts) and records are rendered to
Intercom 2.16 JSON shapes only when a page is served, so a 300,000-contact workspace costs tens of MB, not
GBs. Everything derives from ``(seed, n, version)``: the same config always yields the same workspace.

The traps of the real API (contract ``intercom.md``) are reproduced on purpose:

* contact search compares dates by **whole day in the workspace timezone** (``>`` = from the next day's start,
  ``=`` = the whole day, ``<`` = before the day's start); conversation search compares exact seconds;
* search cursors are **stateless offsets**: a record updated between two page requests moves to its new sort
  position and shifts the rest, so the next page skips a record (and the moved one shows up twice);
* merged contacts vanish from list/search and answer ``410`` with a ``Link`` to the canonical contact;
  archived contacts vanish silently (404);
* conversations return at most the **500 most recent parts**;
* only **one company scroll** may be open; it expires after ``scroll_expiry_seconds`` idle; a 500 kills it.
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo

import orjson

DAY = 86_400
PART_CAP = 500
PLANS = ("free", "starter", "pro", "enterprise")
SIZES = ("1-10", "11-50", "51-200", "201-1000", "1000+")
PAGES = ("/pricing", "/docs", "/blog", "/signup", "/account", "/integrations", "/changelog")
CITIES = (("US", "California", "San Francisco"), ("IE", "Leinster", "Dublin"), ("AU", "NSW", "Sydney"),
          ("DE", "Berlin", "Berlin"), ("GB", "England", "London"), ("FR", "IDF", "Paris"))
BROWSERS = ("chrome", "firefox", "safari", "edge")
OSES = ("OS X 14.4", "Windows 11", "iOS 17.2", "Android 14", "Linux")


def contact_id(n: int) -> str:
    return f"64{n:022x}"


def contact_n(cid: str) -> int | None:
    try:
        return int(cid[2:], 16) if len(cid) == 24 and cid.startswith("64") else None
    except ValueError:
        return None


def company_id(n: int) -> str:
    return f"6c{n:022x}"


def conversation_id(n: int) -> str:
    return str(10**11 + n)


def conversation_n(cid: str) -> int | None:
    return int(cid) - 10**11 if cid.isdigit() and int(cid) >= 10**11 else None


def part_id(conv: int, k: int) -> str:
    return str(10**13 + conv * 10**5 + k)


def _mix(*xs: int) -> int:
    """A cheap deterministic 32-bit hash (no random module: results must not depend on call order)."""
    h = 2166136261
    for x in xs:
        h = ((h ^ (x & 0xFFFFFFFF)) * 16777619) & 0xFFFFFFFF
        h ^= h >> 13
    return h


def encode_token(obj: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(obj)).decode().rstrip("=")


def decode_token(token: str) -> dict | None:
    try:
        return orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except Exception:
        return None


@dataclass
class WorkspaceConfig:
    seed: int = 7
    contacts: int = 1_000
    companies: int = 40
    conversations: int = 120
    tags: int = 12
    segments: int = 6
    admins: int = 8
    teams: int = 3
    #: conversations (by number) that get more parts than the API's 500 cap
    long_conversations: tuple[int, ...] = (0,)
    timezone: str = "America/Los_Angeles"
    #: every generated timestamp lies before this instant (default: the start of the current UTC day - 1 s)
    anchor: int | None = None
    #: how long generated history reaches back
    history_days: int = 400
    scroll_expiry_seconds: float = 60.0
    #: requests allowed per rate-limit window, and the window's length (Intercom: 10 s windows)
    rate_limit: int = 10_000
    rate_window_seconds: float = 10.0
    token: str = "sim-token"
    #: bytes of padding in each contact's custom attribute ``bio`` to reach ~1 KB records (benchmarks)
    contact_padding: int = 0


@dataclass
class Hook:
    """Run ``action`` once, just before the ``on_request``-th request matching ``method path`` is served."""

    method: str
    path: str
    on_request: int
    action: Callable[["Workspace"], None]
    seen: int = 0
    fired: bool = False


class Workspace:
    """All state of one simulated workspace. Thread-safe: the server serialises access with ``lock``."""

    def __init__(self, config: WorkspaceConfig | None = None):
        self.config = c = config or WorkspaceConfig()
        self.lock = threading.RLock()
        self.tz = ZoneInfo(c.timezone)
        self.anchor = c.anchor if c.anchor is not None else (int(time.time()) // DAY) * DAY - 1
        span = c.history_days * DAY
        # contacts: parallel lists indexed by n
        self.c_created = [self.anchor - span + _mix(c.seed, n, 1) % span for n in range(c.contacts)]
        self.c_updated = [
            cr + _mix(c.seed, n, 2) % max(self.anchor - cr, 1) for n, cr in enumerate(self.c_created)
        ]
        self.c_version = [0] * c.contacts
        self.c_status: dict[int, tuple[str, Any]] = {}  # n -> ("merged", target n) | ("archived", None)
        self.c_merge_history: dict[int, list[dict]] = {}
        self.c_overrides: dict[int, dict[str, Any]] = {}  # explicit field values set by tests
        self._json_cache: dict[tuple[int, bool], tuple[tuple[int, int], bytes]] = {}
        self.c_index = sorted((u, n) for n, u in enumerate(self.c_updated))  # live contacts by updated_at
        # companies
        self.co_updated = [self.anchor - _mix(c.seed, n, 3) % span for n in range(c.companies)]
        self.co_version = [0] * c.companies
        self.scroll: dict | None = None  # {"param", "offset", "last_used"}
        # conversations
        self.v_created = [self.anchor - span + _mix(c.seed, n, 4) % span for n in range(c.conversations)]
        self.v_updated = [cr + _mix(c.seed, n, 5) % max(self.anchor - cr, 1) for n, cr in enumerate(self.v_created)]
        self.v_parts = [
            PART_CAP + 20 if n in c.long_conversations else 1 + _mix(c.seed, n, 6) % 6 for n in range(c.conversations)
        ]
        self.v_version = [0] * c.conversations
        self.v_deleted: dict[int, int] = {}  # n -> deleted_at
        self.v_index = sorted((u, n) for n, u in enumerate(self.v_updated))
        self.hooks: list[Hook] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request served, for tests

    # ------------------------------------------------------------------------------------------ time

    def now(self) -> int:
        return int(time.time())

    def day_start(self, ts: int) -> int:
        local = dt.datetime.fromtimestamp(ts, self.tz)
        return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())

    def next_day_start(self, ts: int) -> int:
        local = dt.datetime.fromtimestamp(ts, self.tz).date() + dt.timedelta(days=1)
        return int(dt.datetime(local.year, local.month, local.day, tzinfo=self.tz).timestamp())

    # ------------------------------------------------------------------------------------------ rendering

    def contact(self, n: int, merge_history: bool = False) -> dict:
        c = self.config
        v = self.c_version[n]
        h = _mix(c.seed, n, v, 11)
        user = n % 10 != 9
        country, region, city = CITIES[h % len(CITIES)]
        cid = contact_id(n)
        custom = {
            "plan": PLANS[(h >> 3) % 4],
            "company_size": SIZES[(h >> 5) % 5],
            "last_seen_page": PAGES[(h >> 7) % len(PAGES)],
            "seats": (h >> 9) % 50,
        }
        if c.contact_padding:
            custom["bio"] = ("lorem ipsum dolor sit amet " * (c.contact_padding // 27 + 1))[: c.contact_padding]
        rec = {
            "type": "contact", "id": cid, "workspace_id": "simws01",
            "external_id": f"u{n:07d}" if user else None,
            "role": "user" if user else "lead",
            "email": f"user{n}@example.com", "email_domain": "example.com",
            "phone": f"+1555{n:07d}" if n % 3 == 0 else None,
            "name": f"User {n}" + (f" v{v}" if v else ""),
            "owner_id": str(1000 + h % max(c.admins, 1)) if n % 4 == 0 else None,
            "has_hard_bounced": False, "marked_email_as_spam": False, "unsubscribed_from_emails": h % 13 == 0,
            "created_at": self.c_created[n], "updated_at": self.c_updated[n],
            "signed_up_at": self.c_created[n] if user else None,
            "last_seen_at": self.c_updated[n] - h % 3600, "last_replied_at": None, "last_contacted_at": None,
            "last_email_opened_at": None, "last_email_clicked_at": None, "language_override": None,
            "browser": BROWSERS[h % 4], "browser_version": f"{100 + h % 30}.0", "browser_language": "en",
            "os": OSES[h % 5],
            "custom_attributes": custom,
            "avatar": {"type": "avatar", "image_url": None},
            "tags": {"data": [{"type": "tag", "id": str(100 + h % max(c.tags, 1)),
                               "url": f"/tags/{100 + h % max(c.tags, 1)}"}],
                     "url": f"/contacts/{cid}/tags", "total_count": 1, "has_more": False},
            "notes": {"data": [], "url": f"/contacts/{cid}/notes", "total_count": 0, "has_more": False},
            "companies": {"data": [{"id": company_id(n % max(c.companies, 1)), "type": "company",
                                    "url": f"/companies/{company_id(n % max(c.companies, 1))}"}],
                          "url": f"/contacts/{cid}/companies", "total_count": 1, "has_more": False},
            "location": {"type": "location", "country": country, "region": region, "city": city},
            "social_profiles": {"data": []},
        }
        override = self.c_overrides.get(n)
        if override:
            attrs = override.get("custom_attributes")
            rec.update({k: v for k, v in override.items() if k != "custom_attributes"})
            if attrs:
                rec["custom_attributes"] = {**custom, **attrs}
        if merge_history:
            rec["merge_history"] = self.c_merge_history.get(n, [])
        return rec

    def contact_json(self, n: int, merge_history: bool = False) -> orjson.Fragment:
        """The contact as pre-serialised JSON, cached per version: serving pages is then mostly memcpy, so the
        simulator is never the bottleneck of a benchmark (each record is rendered once per form, with and
        without ``merge_history``, on first request). Merges only ever append to a contact's history."""
        version = (self.c_version[n], len(self.c_merge_history.get(n, ())) if merge_history else 0)
        hit = self._json_cache.get((n, merge_history))
        if hit is None or hit[0] != version:
            hit = (version, orjson.dumps(self.contact(n, merge_history)))
            self._json_cache[(n, merge_history)] = hit
        return orjson.Fragment(hit[1])

    def company(self, n: int) -> dict:
        c, v = self.config, self.co_version[n]
        h = _mix(c.seed, n, v, 13)
        return {
            "type": "company", "id": company_id(n), "name": f"Company {n}" + (f" v{v}" if v else ""),
            "app_id": "simws01", "company_id": f"comp-{n:05d}",
            "plan": {"type": "plan", "id": str(h % 4), "name": PLANS[h % 4]},
            "remote_created_at": self.co_updated[n] - DAY, "created_at": self.co_updated[n] - DAY,
            "updated_at": self.co_updated[n], "last_request_at": self.co_updated[n],
            "size": 1 + h % 5000, "website": f"https://company{n}.example.com", "industry": "Software",
            "monthly_spend": h % 10_000, "session_count": h % 500, "user_count": 1 + h % 50,
            "custom_attributes": {"tier": PLANS[h % 4]},
            "tags": {"type": "tag.list", "tags": []}, "segments": {"type": "segment.list", "segments": []},
        }

    def conversation_item(self, n: int) -> dict:
        c = self.config
        h = _mix(c.seed, n, self.v_version[n], 17)
        contact_n_ = n % max(c.contacts, 1)
        created = self.v_created[n]
        total = self.v_parts[n]
        return {
            "type": "conversation", "id": conversation_id(n), "title": f"Conversation {n}",
            "created_at": created, "updated_at": self.v_updated[n], "waiting_since": None, "snoozed_until": None,
            "open": h % 3 == 0, "state": "open" if h % 3 == 0 else "closed", "read": bool(h % 2),
            "priority": "none" if h % 5 else "high",
            "admin_assignee_id": (1000 + h % max(c.admins, 1)) if h % 4 else 0,
            "team_assignee_id": (2000 + h % max(c.teams, 1)) if h % 4 else 0,
            "tags": {"type": "tag.list", "tags": []},
            "source": {"type": "conversation", "id": str(h), "delivered_as": "customer_initiated",
                       "subject": "", "body": f"<p>Hello from user {contact_n_}</p>",
                       "author": {"type": "user", "id": contact_id(contact_n_), "name": f"User {contact_n_}",
                                  "email": f"user{contact_n_}@example.com"},
                       "attachments": [], "url": None, "redacted": False},
            "contacts": {"type": "contact.list", "contacts": [
                {"type": "contact", "id": contact_id(contact_n_),
                 "external_id": f"u{contact_n_:07d}" if contact_n_ % 10 != 9 else None}]},
            "teammates": {"type": "admin.list", "teammates": []},
            "custom_attributes": {},
            "statistics": {"type": "conversation_statistics", "count_conversation_parts": total + 1,
                           "count_reopens": 0, "count_assignments": 1},
        }

    def part(self, n: int, k: int) -> dict:
        created = self.v_created[n] + k * 60
        admin = k % 2 == 1
        cn = n % max(self.config.contacts, 1)
        return {
            "type": "conversation_part", "id": part_id(n, k), "part_type": "comment",
            "body": f"<p>part {k} of conversation {n}</p>", "created_at": created, "updated_at": created,
            "notified_at": created,  # assigned_to omitted: the spec cannot say null on a $ref
            "author": {"type": "admin", "id": str(1000 + k % max(self.config.admins, 1)), "name": "Admin",
                       "email": "admin@example.com"} if admin else
                      {"type": "user", "id": contact_id(cn), "name": f"User {cn}", "email": f"user{cn}@example.com"},
            "attachments": [], "external_id": None, "redacted": False,
        }

    def conversation(self, n: int) -> dict:
        total = self.v_parts[n]
        first = max(0, total - PART_CAP)  # the API returns only the most recent 500 parts
        parts = [self.part(n, k) for k in range(first, total)]
        return {**self.conversation_item(n),
                "conversation_parts": {"type": "conversation_part.list", "conversation_parts": parts,
                                       "total_count": len(parts)}}

    # ------------------------------------------------------------------------------------------ queries

    def live_contacts(self) -> Iterable[int]:
        return (n for n in range(self.config.contacts) if n not in self.c_status)

    def date_interval(self, op: str, value: int, by_day: bool) -> tuple[float, float]:
        """The [lo, hi) interval of timestamps a date filter matches."""
        if not by_day:
            return {">": (value + 1, float("inf")), "<": (float("-inf"), value), "=": (value, value + 1)}[op]
        if op == ">":
            return (self.next_day_start(value), float("inf"))
        if op == "<":
            return (float("-inf"), self.day_start(value))
        return (self.day_start(value), self.next_day_start(value))

    def intervals(self, query: dict, field: str, by_day: bool) -> list[tuple[float, float]]:
        """A search query on ``field`` as a sorted union of disjoint intervals; ValueError if unsupported."""
        if "field" in query:
            if query["field"] != field:
                raise ValueError(f"the simulator only searches on {field}")
            op = query.get("operator")
            if op in ("!=", ">=", "<=", "IN", "NIN") or op not in (">", "<", "="):
                raise ValueError(f"operator {op!r} is not allowed on date field {field}")
            return [self.date_interval(op, int(query["value"]), by_day)]
        parts = [self.intervals(q, field, by_day) for q in query.get("value") or []]
        if query.get("operator") == "OR":
            return _union([iv for p in parts for iv in p])
        result = [(float("-inf"), float("inf"))]
        for p in parts:
            result = _intersect(result, p)
        return result

    def search(self, index: list[tuple[int, int]], intervals: list[tuple[float, float]], descending: bool) -> list[int]:
        ns: list[int] = []
        for lo, hi in intervals:
            a = bisect.bisect_left(index, (lo, -1))
            b = bisect.bisect_left(index, (hi, -1))
            ns.extend(n for _, n in index[a:b])
        return ns[::-1] if descending else ns

    # ------------------------------------------------------------------------------------------ mutations

    def _touch_contact(self, n: int, at: int | None) -> None:
        old = self.c_updated[n]
        if n not in self.c_status:
            i = bisect.bisect_left(self.c_index, (old, n))
            if i < len(self.c_index) and self.c_index[i] == (old, n):
                del self.c_index[i]
        self.c_updated[n] = at if at is not None else self.now()
        self.c_version[n] += 1
        if n not in self.c_status:
            bisect.insort(self.c_index, (self.c_updated[n], n))

    def update_contact(self, n: int, at: int | None = None, **fields: Any) -> None:
        """Change a contact (new version of its generated fields, plus ``fields``) at ``at`` (default now)."""
        with self.lock:
            if fields:
                self.c_overrides.setdefault(n, {}).update(fields)
            self._touch_contact(n, at)

    def add_contacts(self, count: int, at: int | None = None) -> list[int]:
        with self.lock:
            start = len(self.c_created)
            ts = at if at is not None else self.now()
            for n in range(start, start + count):
                self.c_created.append(ts)
                self.c_updated.append(ts)
                self.c_version.append(0)
                bisect.insort(self.c_index, (ts, n))
            self.config.contacts = start + count
            return list(range(start, start + count))

    def merge_contacts(self, source: int, target: int, at: int | None = None) -> None:
        """Merge ``source`` into ``target`` (Intercom merges a lead into a user)."""
        with self.lock:
            self._remove_contact(source, ("merged", target))
            ts = at if at is not None else self.now()
            self.c_merge_history.setdefault(target, []).append({
                "type": "merge_history", "source_contact_id": contact_id(source),
                "source_contact_role": "user" if source % 10 != 9 else "lead", "merged_at": ts,
            })
            self._touch_contact(target, ts)

    def archive_contact(self, n: int) -> None:
        with self.lock:
            self._remove_contact(n, ("archived", None))

    def _remove_contact(self, n: int, status: tuple[str, Any]) -> None:
        if n in self.c_status:
            raise ValueError(f"contact {n} is already {self.c_status[n][0]}")
        i = bisect.bisect_left(self.c_index, (self.c_updated[n], n))
        del self.c_index[i]
        self.c_status[n] = status

    def canonical(self, n: int) -> int | None:
        """Where a merged contact lives now (following up to 3 hops, as the API does)."""
        for _ in range(3):
            status = self.c_status.get(n)
            if status is None:
                return n
            if status[0] != "merged":
                return None
            n = status[1]
        return n if n not in self.c_status else None

    def _touch_conversation(self, n: int, at: int | None) -> None:
        old = self.v_updated[n]
        if n not in self.v_deleted:
            i = bisect.bisect_left(self.v_index, (old, n))
            del self.v_index[i]
        self.v_updated[n] = at if at is not None else self.now()
        self.v_version[n] += 1
        if n not in self.v_deleted:
            bisect.insort(self.v_index, (self.v_updated[n], n))

    def add_parts(self, n: int, count: int = 1, at: int | None = None) -> None:
        with self.lock:
            self.v_parts[n] += count
            self._touch_conversation(n, at)

    def update_conversation(self, n: int, at: int | None = None) -> None:
        with self.lock:
            self._touch_conversation(n, at)

    def add_conversations(self, count: int, at: int | None = None) -> list[int]:
        with self.lock:
            start = len(self.v_created)
            ts = at if at is not None else self.now()
            for n in range(start, start + count):
                self.v_created.append(ts)
                self.v_updated.append(ts)
                self.v_parts.append(1 + n % 3)
                self.v_version.append(0)
                bisect.insort(self.v_index, (ts, n))
            self.config.conversations = start + count
            return list(range(start, start + count))

    def delete_conversation(self, n: int, at: int | None = None) -> None:
        with self.lock:
            i = bisect.bisect_left(self.v_index, (self.v_updated[n], n))
            del self.v_index[i]
            self.v_deleted[n] = at if at is not None else self.now()

    def update_company(self, n: int, at: int | None = None) -> None:
        with self.lock:
            self.co_version[n] += 1
            self.co_updated[n] = at if at is not None else self.now()

    def on_request(self, method: str, path: str, on_request: int, action: Callable[["Workspace"], None]) -> Hook:
        """Mutate the workspace while a client is paging (e.g. before the 2nd page of a search)."""
        hook = Hook(method.upper(), path, on_request, action)
        with self.lock:
            self.hooks.append(hook)
        return hook

    def run_hooks(self, method: str, path: str) -> None:
        for hook in self.hooks:
            if not hook.fired and hook.method == method and hook.path == path:
                hook.seen += 1
                if hook.seen >= hook.on_request:
                    hook.fired = True
                    hook.action(self)

    # ------------------------------------------------------------------------------------------ truth

    def truth_contacts(self) -> dict[str, dict]:
        """What ``intercom.contacts`` must hold: every contact ever seen, vanished ones marked."""
        out = {}
        for n in range(self.config.contacts):
            rec = self.contact(n)
            status = self.c_status.get(n)
            out[rec["id"]] = {
                "id": rec["id"], "external_id": rec["external_id"], "email": rec["email"], "phone": rec["phone"],
                "name": rec["name"], "role": rec["role"], "custom_attributes": rec["custom_attributes"],
                "created_at": rec["created_at"], "updated_at": rec["updated_at"],
                "deleted": status is not None, "deleted_reason": status[0] if status else None,
            }
        return out

    def truth_conversations(self) -> dict[str, dict]:
        out = {}
        for n in range(self.config.conversations):
            out[conversation_id(n)] = {
                "id": conversation_id(n), "updated_at": self.v_updated[n], "deleted": n in self.v_deleted,
                "parts_truncated": self.v_parts[n] > PART_CAP, "parts_total": self.v_parts[n],
            }
        return out

    def truth_parts(self) -> dict[str, set[str]]:
        """Per live conversation, the part ids the API can return now (the 500 most recent)."""
        return {
            conversation_id(n): {part_id(n, k) for k in range(max(0, self.v_parts[n] - PART_CAP), self.v_parts[n])}
            for n in range(self.config.conversations) if n not in self.v_deleted
        }

    def truth_companies(self) -> dict[str, int]:
        return {company_id(n): self.co_updated[n] for n in range(self.config.companies)}


def _union(ivs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for lo, hi in sorted(ivs):
        if lo >= hi:
            continue
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _intersect(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out = [(max(x0, y0), min(x1, y1)) for x0, x1 in a for y0, y1 in b]
    return _union([iv for iv in out if iv[0] < iv[1]])
