"""Realistic Segment events (all six types, ~1.2 KB each) and known-bad payloads, for tests, demo and benchmark.

End users come from the shared universe: user n has ``userId = f"u{n:07d}"`` and email
``f"user{n}@example.com"``, so Braze can join these events with Intercom contacts. Output is deterministic for
a given seed, and every ``messageId`` is unique across seeds and indices.
"""

from __future__ import annotations

import datetime as dt
import random
from concurrent import futures
from dataclasses import dataclass
from typing import Iterable, Iterator

import orjson

#: Share of each type in a simulated stream (roughly what a web + mobile product sends).
TYPE_WEIGHTS = {"track": 50, "page": 20, "identify": 10, "screen": 10, "group": 5, "alias": 5}
PLANS = ("free", "starter", "pro", "enterprise")
EVENTS = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Signed Up", "Song Played")
PAGES = (("Home", "Marketing", "/"), ("Pricing", "Marketing", "/pricing"), ("Docs", "Docs", "/docs/start"),
         ("Cart", "Shop", "/cart"))
SCREENS = ("Feed", "Settings", "Player", "Checkout")
USER_AGENT = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0.0.0 Safari/537.36")
BASE_TIME = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def user_id(n: int) -> str:
    return f"u{n:07d}"


def user_email(n: int) -> str:
    return f"user{n}@example.com"


def message_id(seed: int, i: int) -> str:
    # Looks like analytics.js ids (`ajs-` + 32 hex) and is unique per (seed, i).
    return f"ajs-{seed:08x}{i:024x}"


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


@dataclass
class SegmentEventFactory:
    seed: int = 0
    users: int = 10_000

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._types = list(TYPE_WEIGHTS)
        self._weights = list(TYPE_WEIGHTS.values())

    def event(self, i: int, event_type: str | None = None) -> dict:
        rng = self._rng
        etype = event_type or rng.choices(self._types, self._weights)[0]
        n = rng.randrange(self.users)
        sent = BASE_TIME + dt.timedelta(seconds=i * 0.05 + rng.random())
        original = sent - dt.timedelta(milliseconds=rng.randrange(5, 400))
        received = sent + dt.timedelta(milliseconds=rng.randrange(20, 900))
        anonymous = rng.random() < 0.15 and etype not in ("alias", "identify")
        title, category, path = PAGES[i % len(PAGES)]
        context = {
            "active": True,
            "ip": f"10.{n % 250}.{(n // 250) % 250}.{i % 250}",
            "locale": "en-US",
            "library": {"name": "analytics.js", "version": "5.2.1"},
            "page": {"path": path, "referrer": "https://www.google.com/", "search": "",
                     "title": f"{title} | Example", "url": f"https://www.example.com{path}"},
            "userAgent": USER_AGENT,
            "campaign": {"name": "autumn_sale", "source": "newsletter", "medium": "email", "content": "hero"},
            "timezone": "Europe/Berlin",
            "screen": {"width": 1512, "height": 982, "density": 2},
        }
        if not anonymous:
            context["traits"] = {"email": user_email(n)}
        event: dict = {
            "type": etype,
            "messageId": message_id(self.seed, i),
            "anonymousId": f"anon-{self.seed:04x}-{n:08x}",
            "channel": "browser" if etype != "screen" else "mobile",
            "context": context,
            "integrations": {"All": True, "Mixpanel": False},
            "originalTimestamp": _iso(original),
            "sentAt": _iso(sent),
            "receivedAt": _iso(received),
            "timestamp": _iso(received - (sent - original)),  # Segment's skew correction (contract A.1)
            "version": 2,
        }
        if not anonymous:
            event["userId"] = user_id(n)
        if etype == "track":
            name = EVENTS[i % len(EVENTS)]
            event["event"] = name
            event["properties"] = {"product_id": f"p{rng.randrange(5000):05d}", "sku": f"SKU-{i % 997:04d}",
                                   "price": round(rng.uniform(1, 300), 2), "quantity": rng.randrange(1, 4),
                                   "currency": "USD", "revenue": round(rng.uniform(1, 300), 2),
                                   "category": category, "name": f"{name} item", "coupon": None}
        elif etype == "identify":
            event["traits"] = {"email": user_email(n), "name": f"User {n}", "firstName": "User",
                               "lastName": str(n), "plan": PLANS[n % len(PLANS)],
                               "company_size": (n % 7 + 1) * 25, "createdAt": "2024-03-01T10:00:00.000Z",
                               "title": "Engineer", "company": {"name": f"Company {n % 500}", "id": f"c{n % 500}"}}
        elif etype == "page":
            event["name"], event["category"] = title, category
            event["properties"] = {"title": title, "path": path, "url": f"https://www.example.com{path}",
                                   "referrer": "https://www.google.com/", "search": "", "keywords": ["cdp"]}
        elif etype == "screen":
            event["name"] = SCREENS[i % len(SCREENS)]
            event["properties"] = {"name": event["name"], "variation": "blue", "build": 4021}
        elif etype == "group":
            event["groupId"] = f"c{n % 500}"
            event["traits"] = {"name": f"Company {n % 500}", "industry": "Software", "employees": 25 * (n % 40 + 1),
                               "plan": PLANS[n % len(PLANS)], "website": f"https://company{n % 500}.example.com",
                               "email": f"billing@company{n % 500}.example.com"}
        else:  # alias: the anonymous id becomes the known user id
            event["previousId"] = event["anonymousId"]
            event["userId"] = user_id(n)
        return event

    def payloads(self, count: int, start: int = 0) -> Iterator[bytes]:
        for i in range(start, start + count):
            yield orjson.dumps(self.event(i))


def malformed_payloads(seed: int = 0) -> list[tuple[bytes, str]]:
    """Bad payloads, each with the rejection reason the parser must give it."""
    good = SegmentEventFactory(seed=seed).event(10**9, "track")

    def variant(**changes) -> bytes:
        ev = {**good, **changes, "messageId": changes.get("messageId", message_id(seed, 10**9 + len(changes)))}
        return orjson.dumps({k: v for k, v in ev.items() if v is not _DROP})

    return [
        (b"{\"type\": \"track\", \"messageId\": ", "invalid_json"),
        (b"\xff\xfe not utf-8", "invalid_json"),
        (b"[1, 2, 3]", "not_an_object"),
        (variant(type=_DROP, messageId="bad-no-type"), "missing_type"),
        (variant(type="purchase", messageId="bad-unknown-type"), "unknown_type"),
        (variant(messageId=_DROP), "missing_message_id"),
        (variant(messageId="m" * 101), "message_id_too_long"),
        (variant(userId=_DROP, anonymousId=_DROP, messageId="bad-no-identity"), "missing_identity"),
        (variant(event=_DROP, messageId="bad-track-no-event"), "missing_field"),
        (variant(timestamp="yesterday-ish", messageId="bad-timestamp"), "invalid_timestamp"),
        (variant(properties=[1, 2], messageId="bad-properties"), "invalid_field"),
        (variant(properties={"blob": "x" * 33_000}, messageId="bad-too-large"), "payload_too_large"),
    ]


class _Drop:
    pass


_DROP = _Drop()


def publish(publisher, topic_path: str, payloads: Iterable[bytes]) -> list[str]:
    """Publish raw payloads (Segment sends the event JSON as the message data, no attributes); wait for all."""
    pending = [publisher.publish(topic_path, data) for data in payloads]
    futures.wait(pending)
    return [f.result() for f in pending]
