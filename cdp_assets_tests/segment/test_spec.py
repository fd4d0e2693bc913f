"""Every request the client sends and every response the simulator serves validate against the official
Segment spec (v32.0.5, patched in memory only for the drift the contracts README lists), for all 18 objects."""

from __future__ import annotations

import collections
import datetime as dt

import pytest
import requests

from cdp_assets.segment import catalog, extract
from cdp_assets.segment.catalog import Kind
from cdp_assets.segment.client import SegmentAuthError, SegmentClient, SegmentForbidden
from cdp_assets.segment.simulator import SegmentSimulator, SimConfig, Workspace, WorkspaceSize
from cdp_assets_tests.openapi_validation import (
    SEGMENT_EU_SERVER,
    load_spec,
    validate_error_body,
    validate_request,
    validate_response,
)

from .conftest import TOKEN

UTC = dt.timezone.utc


class SpecRecorder:
    """An ``on_response`` observer: validates each exchange, remembers which objects it saw."""

    def __init__(self, server: str | None = None):
        self.api = load_spec("segment")
        self.server = server
        self.statuses: collections.Counter = collections.Counter()
        self.paths: set[str] = set()

    def __call__(self, response: requests.Response) -> None:
        self.statuses[response.status_code] += 1
        validate_request(self.api, response.request, self.server)
        if response.status_code == 200:
            validate_response(self.api, response.request, response, self.server)
            self.paths.add(response.request.path_url.split("?")[0])
        else:
            validate_error_body(self.api, response.content)


def _parents(ws: Workspace, obj: catalog.SegmentObject) -> list[dict]:
    if obj.parent == "sources":
        return [{"id": ws.source_id(s)} for s in range(ws.size.sources)]
    if obj.parent == "destinations":
        return [{"id": ws.destination_id(d), "sourceId": ws.source_id(ws.source_of_destination(d))}
                for d in range(ws.destination_count)]
    return []


def read_everything(client: SegmentClient, ws: Workspace) -> dict[str, int]:
    counts = {}
    for obj in catalog.CATALOG:
        kwargs: dict = {"parents": _parents(ws, obj)}
        if obj.kind is Kind.METRICS:
            kwargs["window"] = extract.MetricsWindow.days_before(ws.clock(), 13)
        if obj.kind is Kind.USAGE:
            kwargs["period"] = ws.usage_months()[-2]
        if obj.kind is Kind.AUDIT:
            kwargs["start_time"] = extract.audit_start(None, ws.clock(), dt.timedelta(0))
        counts[obj.name] = sum(len(b) for b in extract.record_batches(client, obj, **kwargs))
    return counts


def test_all_18_endpoints_validate_against_the_official_spec():
    # small pages so pagination (cursor requests) is exercised on every list endpoint, and a few 429s
    ws = Workspace(seed=3, size=WorkspaceSize(sources=3, destinations_per_source=2, catalog_destinations=30,
                                             catalog_sources=12, users=7, audit_events_per_day=0.2))
    recorder = SpecRecorder()
    with SegmentSimulator(ws, SimConfig(token=TOKEN, rate_limit=40, rate_window_seconds=0.3)) as sim:
        # both 429 bodies (documented and the spec's example) must be seen whatever the machine's speed
        sim.faults.inject(["sources", "users", "catalog_sources"], "429")
        with SegmentClient(sim.url, TOKEN, page_size=5, backoff_base=0.01, on_response=recorder) as client:
            counts = read_everything(client, ws)
    assert len(recorder.paths) >= len(catalog.CATALOG)  # fan-outs hit one path per parent
    templates = {o.path for o in catalog.CATALOG}
    seen = {p for p in templates if any(_matches(p, real) for real in recorder.paths)}
    assert seen == templates
    assert recorder.statuses[200] > 60 and recorder.statuses[429] >= 3
    assert counts["catalog_destinations"] == 30 and counts["destinations"] == 6
    assert all(n > 0 for n in counts.values()), counts


def _matches(template: str, path: str) -> bool:
    t, p = template.strip("/").split("/"), path.strip("/").split("/")
    return len(t) == len(p) and all(a.startswith("{") or a == b for a, b in zip(t, p))


def test_eu_host_and_error_bodies_validate():
    ws = Workspace(seed=5, size=WorkspaceSize(sources=2, catalog_destinations=5, catalog_sources=3))
    config = SimConfig(token=TOKEN, home_region="eu", forbidden=frozenset({"transformations"}))
    with SegmentSimulator(ws, config) as sim:
        eu = SpecRecorder(server=SEGMENT_EU_SERVER)
        with SegmentClient(sim.urls["eu"], TOKEN, on_response=eu) as client:
            assert len(list(client.pages("/sources", "sources"))) == 1
            with pytest.raises(SegmentForbidden):
                list(client.pages("/transformations", "transformations"))
        assert eu.statuses == {200: 1, 403: 1}
        # the token belongs to the EU workspace: the US host rejects it, with an error naming host and variable
        us = SpecRecorder()
        with SegmentClient(sim.urls["us"], TOKEN, on_response=us) as client:
            with pytest.raises(SegmentAuthError) as err:
                list(client.pages("/sources", "sources"))
        assert sim.urls["us"] in str(err.value) and "SEGMENT_API_TOKEN" in str(err.value)
        assert TOKEN not in str(err.value)
        assert us.statuses == {401: 1}
