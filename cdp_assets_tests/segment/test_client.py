"""The client's Segment-specific behaviour against the simulator: 429 hints, pagination, loops, timeouts."""

from __future__ import annotations

import email.utils
import time

import orjson
import pytest
import requests

from cdp_assets.segment.client import CursorLoopError, SegmentClient, pagination_params, wait_after_429
from cdp_assets.segment.simulator import SegmentSimulator, SimConfig, Workspace, WorkspaceSize

from .conftest import TOKEN


def _response(status: int, body: dict | None, headers: dict | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = orjson.dumps(body) if body is not None else b""
    r.headers.update(headers or {})
    return r


def test_429_wait_comes_from_the_body_else_the_reset_date_else_retry_after():
    documented = {"errors": [{"type": "RequestError", "message": "Too many requests",
                              "data": {"remainingPoints": 0, "msBeforeNext": 57647, "consumedPoints": 21}}]}
    assert wait_after_429(_response(429, documented)) == pytest.approx(57.647)
    reset = email.utils.formatdate(time.time() + 30, usegmt=True)
    spec_example = {"errors": [{"type": "RateLimited", "message": "Rate limit exceeded"}]}
    assert 28 <= wait_after_429(_response(429, spec_example, {"X-RateLimit-Reset": reset})) <= 30
    assert wait_after_429(_response(429, spec_example, {"Retry-After": "7"})) == 7
    assert wait_after_429(_response(429, None)) is None


def test_pagination_encoding_is_the_documented_dot_form():
    assert pagination_params() == {"pagination.count": 200}
    assert pagination_params(50, "abc") == {"pagination.count": 50, "pagination.cursor": "abc"}


@pytest.fixture
def small_sim():
    ws = Workspace(seed=2, size=WorkspaceSize(catalog_destinations=45))
    with SegmentSimulator(ws, SimConfig(token=TOKEN, rate_limit=4, rate_window_seconds=0.4, slow_seconds=0.6)) as s:
        yield s


def test_pages_follow_next_to_the_end_under_rate_limits(small_sim):
    with SegmentClient(small_sim.url, TOKEN, page_size=10) as client:
        pages = list(client.pages("/catalog/destinations", "destinationsCatalog"))
    ids = [r["id"] for p in pages for r in p.records]
    assert len(pages) == 5 and len(ids) == len(set(ids)) == 45
    assert small_sim.stats.rate_limited + client.stats.waited_seconds > 0  # throttled or paced, never failed


def test_a_repeated_cursor_stops_with_a_clear_error(small_sim):
    small_sim.faults.inject("catalog_destinations", "loop", "loop")
    with SegmentClient(small_sim.url, TOKEN, page_size=10) as client:
        with pytest.raises(CursorLoopError, match="a second time"):
            list(client.pages("/catalog/destinations", "destinationsCatalog"))


def test_slow_responses_time_out_and_are_retried(small_sim):
    small_sim.faults.inject("users", "slow")
    with SegmentClient(small_sim.url, TOKEN, timeout=0.3, backoff_base=0.01) as client:
        users = [r for p in client.pages("/users", "users") for r in p.records]
    assert len(users) == small_sim.workspace.size.users and client.stats.retries == 1
