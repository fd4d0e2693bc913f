"""The client's requests and the simulator's responses validate against the official 2.16 spec; the
simulator reproduces the traps; errors are clear and never carry the token."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
import requests

from cdp_assets.intercom.client import API_VERSION, IntercomClient, IntercomError
from cdp_assets.intercom.simulator import SimulatorServer, Workspace, contact_id, conversation_id
from cdp_assets.intercom.sync import read_window, since_query
from cdp_assets_tests.openapi_validation import validate_error_body, validate_request, validate_response

from .conftest import TOKEN, small_config


@pytest.fixture
def sim():
    server = SimulatorServer(Workspace(small_config())).start()
    yield server
    server.stop()


def client_for(server: SimulatorServer, seen: list | None = None, **kw) -> IntercomClient:
    return IntercomClient(server.url, TOKEN, backoff_base=0.01, scroll_busy_wait=0.05,
                          on_response=seen.append if seen is not None else None, **kw)


def test_every_request_and_response_validates_against_the_spec(sim):
    seen: list[requests.Response] = []
    ws = sim.workspace
    ws.merge_contacts(9, 8)
    ws.delete_conversation(3)
    client = client_for(sim, seen)
    pages = list(client.cursor_pages("GET", "/contacts", "data", params={"include_merge_history": "true"}))
    assert sum(len(p.records) for p in pages) == ws.config.contacts - 1
    list(read_window(client, "/contacts/search", "data", ws.anchor - 30 * 86_400, ws.now(),
                     params={"include_merge_history": "true"}))
    list(read_window(client, "/conversations/search", "conversations", ws.anchor - 60 * 86_400, ws.now()))
    list(client.cursor_pages("GET", "/conversations", "conversations"))
    assert client.conversation(conversation_id(0))["conversation_parts"]["total_count"] == 500
    assert client.conversation(conversation_id(3)) is None  # deleted: 404, skipped
    assert [d["id"] for d in client.deleted_conversations(None)] == [conversation_id(3)]
    assert len(client.read_companies()) == ws.config.companies
    assert client.contact_fate(contact_id(9)) == ("merged", contact_id(8))
    for path in ("/tags", "/segments", "/admins", "/teams", "/me"):
        client.get(path)
    assert client.workspace_timezone() == ws.config.timezone
    assert len(seen) > 20
    ops = set()
    for resp in seen:
        req = resp.request
        assert req.headers["Intercom-Version"] == API_VERSION
        validate_request("intercom", req)
        if resp.status_code in (200, 401, 404, 410) and not (resp.status_code == 404 and "/conversations/" in req.url):
            validate_response("intercom", req, resp)
        else:
            validate_error_body("intercom", resp.content)
        ops.add(f"{req.method} {req.path_url.split('?')[0]}")
    assert {"GET /contacts", "POST /contacts/search", "POST /conversations/search", "GET /conversations",
            "GET /conversations/deleted", "GET /companies/scroll", f"GET /contacts/{contact_id(9)}",
            f"GET /conversations/{conversation_id(0)}", "GET /tags", "GET /segments", "GET /admins", "GET /teams",
            "GET /me"} <= ops


def test_contact_search_matches_whole_days_in_the_workspace_timezone(sim):
    """The trap: ``updated_at > c`` skips the rest of c's day; the OR query does not."""
    ws = sim.workspace
    cursor = max(ws.c_updated)
    ws.update_contact(5, at=cursor + 1)  # later the same day (the anchor is the end of a UTC day)
    assert ws.day_start(cursor) == ws.day_start(cursor + 1)
    client = client_for(sim)

    def ids(query):
        body = {"query": query, "sort": {"field": "updated_at", "order": "ascending"}}
        return {r["id"] for p in client.cursor_pages("POST", "/contacts/search", "data", body=body) for r in p.records}

    naive = ids({"field": "updated_at", "operator": ">", "value": cursor})
    assert contact_id(5) not in naive
    assert contact_id(5) in ids(since_query(cursor))
    # the day boundary is the workspace's (Los Angeles), not UTC
    local_midnight = int(dt.datetime.fromtimestamp(cursor, ws.tz).replace(hour=0, minute=0, second=0).timestamp())
    assert ws.day_start(cursor) == local_midnight != cursor - cursor % 86_400
    with pytest.raises(IntercomError) as err:  # >= on dates is rejected, as by the real API
        ids({"field": "updated_at", "operator": ">=", "value": cursor})
    assert err.value.status == 400


def test_errors_are_clear_and_never_carry_the_token(sim):
    bad = IntercomClient(sim.url, "wrong-" + TOKEN, backoff_base=0.01)
    with pytest.raises(IntercomError) as err:
        bad.get("/tags")
    msg = str(err.value)
    assert "HTTP 401" in msg and "unauthorized" in msg and "Access Token Invalid" in msg and "request_id" in msg
    assert TOKEN not in msg and err.value.code == "unauthorized"
    sim.inject("500", "/tags", times=10)
    client = client_for(sim, max_attempts=3)
    with pytest.raises(Exception) as err2:
        client.get("/tags")
    assert "gave up after 3 attempts" in str(err2.value) and TOKEN not in str(err2.value)


def test_429_waits_until_reset_and_scroll_rules(sim):
    ws = sim.workspace
    ws.config.rate_limit, ws.config.rate_window_seconds = 5, 1.0
    client = client_for(sim)
    for _ in range(12):
        client.get("/tags")
    stats = client.session.stats
    assert stats.waited_seconds > 0 and stats.rate_limited == 0  # paced from the headers instead of hitting 429
    sim.inject("429", "/tags", times=2)
    client.get("/tags")
    assert stats.rate_limited == 2 and stats.retries == 0  # 429s are waited out, never counted as failures
    ws.config.rate_limit = 10_000
    # one scroll at a time: an open scroll makes the next one wait, then it proceeds
    raw = requests.get(sim.url + "/companies/scroll", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert raw.status_code == 200
    ws.config.scroll_expiry_seconds = 0.2  # the abandoned scroll expires quickly
    assert len(client.read_companies()) == ws.config.companies
    # a 500 mid-scroll kills it: the reader restarts from the beginning and still returns each company once
    sim.inject("500", "/companies/scroll", times=1)
    ws.on_request("GET", "/companies/scroll", 1, lambda w: None)
    companies = client.read_companies()
    assert len({c["id"] for c in companies}) == len(companies) == ws.config.companies


def test_slim_pages_carry_the_paging_fields_and_the_whole_body(sim):
    """Paging with ``fields`` decodes only those fields, equal to a whole decode, and keeps the body for the
    warehouse; a record updated after the run's bound is dropped from a slim page as from a whole one."""
    from cdp_assets.intercom.assets import CONTACT_PAGING

    ws = sim.workspace
    ws.merge_contacts(9, 8)
    client = client_for(sim)
    params = {"include_merge_history": "true"}
    whole = list(client.cursor_pages("GET", "/contacts", "data", params=params))
    slim = list(client.cursor_pages("GET", "/contacts", "data", params=params, fields=CONTACT_PAGING))
    assert [p.next_token for p in slim] == [p.next_token for p in whole] and len(slim) > 1
    assert [p.total_count for p in slim] == [p.total_count for p in whole]
    for s, w in zip(slim, whole):
        assert s.records == [{f: r.get(f) for f in CONTACT_PAGING} for r in w.records]
        assert orjson.loads(s.raw)["data"] == w.records
    assert any(r["merge_history"] for p in slim for r in p.records)  # the merge is seen through a slim page

    lower = ws.anchor - 30 * 86_400
    bound = max(r["updated_at"] for p in whole for r in p.records) - 1  # the newest contact is past the bound
    kept = [p for p in read_window(client, "/contacts/search", "data", lower, bound, params=params,
                                   fields=CONTACT_PAGING)]
    cut = [p for p in kept if p.raw is None]
    assert cut and all(len(r) > len(CONTACT_PAGING) for p in cut for r in p.records)  # decoded whole
    assert sorted(r["id"] for p in kept for r in p.records) == sorted(
        r["id"] for p in whole for r in p.records if lower <= r["updated_at"] <= bound)


def test_the_slim_decoder_falls_back_to_a_whole_decode_and_fails_on_a_cut_body():
    from cdp_assets.intercom.client import slim_decoder

    decode = slim_decoder("data", ("id",))
    big = b'{"type": "list", "data": [{"id": "a", "n": 123456789012345678901234567890}], "pages": {}}'
    assert decode(big) == orjson.loads(big)  # beyond 64 bits: simdjson refuses, orjson decodes it whole
    assert decode(b'{"data": [{"id": "a", "x": [1]}], "total_count": 1}') == {
        "data": [{"id": "a"}], "total_count": 1, "pages": {"next": None}}
    with pytest.raises(orjson.JSONDecodeError):  # what ``call`` retries
        decode(b'{"data": [{"id": "a"')
