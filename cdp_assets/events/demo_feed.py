"""Feed for `cdp-demo`: publish simulated Segment events (plus a few malformed ones) to the local emulator."""

from __future__ import annotations

import time

from .resources import PubSubResource
from .simulator import SegmentEventFactory, malformed_payloads, publish


def publish_demo_events(count: int, seed: int | None = None) -> int:
    """Start/reuse the emulator, create topic and subscription, publish ``count`` good + the malformed set."""
    pubsub = PubSubResource()
    topic, _ = pubsub.ensure_exists()
    publisher = pubsub.publisher()
    # A new seed per call keeps messageIds unique across demo runs (the tables merge on them).
    seed = int(time.time()) & 0x7FFFFFFF if seed is None else seed
    ids = publish(publisher, topic, SegmentEventFactory(seed=seed).payloads(count))
    ids += publish(publisher, topic, [data for data, _ in malformed_payloads(seed)])
    return len(ids)
