"""Parser unit tests: column values per type, lineage columns, and every rejection reason."""

from __future__ import annotations

import base64

import orjson
import pandas as pd
import pytest

from cdp_assets.events.parse import (
    ALL_TABLES,
    COMMON_COLUMNS,
    RawMessage,
    parse_batch,
)
from cdp_assets.events.simulator import SegmentEventFactory, malformed_payloads, user_email, user_id

PUBLISH_NS = 1_795_334_107_895_000_000  # 2026-11-22T07:55:07.895Z


def msg(event: dict | bytes, pid: str = "1001") -> RawMessage:
    data = event if isinstance(event, bytes) else orjson.dumps(event)
    return RawMessage(data, pid, PUBLISH_NS)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC")


def test_identify_row_has_typed_columns_and_email_from_traits():
    event = {
        "type": "identify", "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db", "userId": "u0000042",
        "anonymousId": "anon-1", "traits": {"email": "user42@example.com", "plan": "pro", "company_size": 50},
        "context": {"ip": "10.0.0.1", "traits": {"email": "other@example.com"}},
        "timestamp": "2026-11-01T10:00:00.500Z", "originalTimestamp": "2026-11-01T11:00:00.100+01:00",
        "sentAt": "2026-11-01T10:00:00.400Z", "receivedAt": "2026-11-01T10:00:01.000Z",
        "version": "1.1", "channel": "server", "writeKey": "abc",
    }
    frame = parse_batch([msg(event)]).frames["identifies"]
    row = frame.iloc[0]
    assert len(frame) == 1
    assert row["message_id"] == "022bb90c-bbac-11e4-8dfc-aa07a5b093db"
    assert (row["user_id"], row["anonymous_id"], row["email"]) == ("u0000042", "anon-1", "user42@example.com")
    assert row["timestamp"] == ts("2026-11-01T10:00:00.500Z")
    assert row["original_timestamp"] == ts("2026-11-01T10:00:00.100Z")  # offset converted to UTC
    assert row["sent_at"] == ts("2026-11-01T10:00:00.400Z")
    assert row["received_at"] == ts("2026-11-01T10:00:01Z")
    assert str(frame["timestamp"].dt.tz) == "UTC"
    # JSON columns are JSON text, encoded once by the parser (the write form)
    assert orjson.loads(row["traits"]) == {"email": "user42@example.com", "plan": "pro", "company_size": 50}
    assert orjson.loads(row["context"])["ip"] == "10.0.0.1"
    assert row["integrations"] == "{}"  # absent == {} (Segment's default: all destinations)
    assert (row["version"], row["channel"]) == ("1.1", "server")
    assert orjson.loads(row["extra"]) == {"writeKey": "abc"}  # unmapped top-level keys are kept, not dropped
    assert row["pubsub_message_id"] == "1001"
    assert row["publish_time"] == pd.Timestamp(PUBLISH_NS, unit="ns", tz="UTC")


def test_each_type_lands_in_its_table_with_its_own_columns():
    f = SegmentEventFactory(seed=7)
    events = {t: f.event(i, t) for i, t in enumerate(["track", "identify", "page", "screen", "group", "alias"])}
    batch = parse_batch([msg(e, str(i)) for i, e in enumerate(events.values())])
    assert batch.counts == {"tracks": 1, "identifies": 1, "pages": 1, "screens": 1, "groups": 1, "aliases": 1,
                            "rejected": 0}
    track = batch.frames["tracks"].iloc[0]
    assert track["event"] == events["track"]["event"] and orjson.loads(track["properties"]) == events["track"]["properties"]
    page = batch.frames["pages"].iloc[0]
    assert (page["page"], page["category"]) == (events["page"]["name"], events["page"]["category"])
    assert batch.frames["screens"].iloc[0]["screen"] == events["screen"]["name"]
    group = batch.frames["groups"].iloc[0]
    assert group["group_id"] == events["group"]["groupId"]
    # a group's traits.email is the company's; the user's email comes from context.traits only
    assert group["email"] == events["group"]["context"].get("traits", {}).get("email")
    alias = batch.frames["aliases"].iloc[0]
    assert (alias["user_id"], alias["previous_id"]) == (events["alias"]["userId"], events["alias"]["previousId"])
    for table in ALL_TABLES[:-1]:
        frame = batch.frames[table]
        assert list(frame.columns[: len(COMMON_COLUMNS)]) == list(COMMON_COLUMNS)
        # typed as declared, so the warehouse layer writes them without inference
        assert str(frame["timestamp"].dtype) == "timestamp[us, tz=UTC][pyarrow]"
        assert str(frame["context"].dtype) == str(frame["message_id"].dtype) == "string[pyarrow]"


def test_simulated_identify_uses_the_shared_user_universe():
    event = SegmentEventFactory(seed=1).event(3, "identify")
    n = int(event["userId"][1:])
    assert event["userId"] == user_id(n) == f"u{n:07d}"
    assert event["traits"]["email"] == user_email(n)
    assert {"name", "plan", "company_size"} <= event["traits"].keys()
    sizes = [len(p) for p in SegmentEventFactory(seed=2).payloads(500)]
    assert 900 <= sum(sizes) / len(sizes) <= 1500  # "about 1.2 KB"


def test_email_falls_back_to_context_traits_and_type_is_case_insensitive():
    event = SegmentEventFactory(seed=3).event(0, "track")
    event["type"] = "Track"
    event["context"]["traits"] = {"email": "ctx@example.com"}
    row = parse_batch([msg(event)]).frames["tracks"].iloc[0]
    assert row["email"] == "ctx@example.com"


@pytest.mark.parametrize("payload, reason", malformed_payloads(seed=5), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_payloads_are_rejected_with_reason_raw_payload_and_pubsub_id(payload, reason):
    batch = parse_batch([msg(payload, "777")])
    assert sum(batch.counts[t] for t in ALL_TABLES[:-1]) == 0
    rej = batch.frames["rejected"]
    assert len(rej) == 1
    row = rej.iloc[0]
    assert row["reason"] == reason
    assert row["pubsub_message_id"] == "777"
    assert base64.b64decode(row["raw_payload_base64"]) == payload  # lossless, even for invalid UTF-8
    assert row["payload_bytes"] == len(payload)
    assert row["publish_time"] == pd.Timestamp(PUBLISH_NS, unit="ns", tz="UTC")


def test_rejects_keep_the_segment_message_id_when_there_is_one():
    bad = dict(SegmentEventFactory(seed=1).event(0, "group"))
    del bad["groupId"]
    row = parse_batch([msg(bad)]).frames["rejected"].iloc[0]
    assert (row["reason"], row["message_id"], row["event_type"]) == ("missing_field", bad["messageId"], "group")


def test_message_id_of_exactly_100_characters_is_accepted():
    event = SegmentEventFactory(seed=1).event(0, "screen")
    event["messageId"] = "x" * 100
    assert parse_batch([msg(event)]).counts["screens"] == 1


def test_zone_less_timestamps_are_read_as_utc_and_a_bad_one_rejects_only_its_event():
    f = SegmentEventFactory(seed=9)
    good, naive, bad = f.event(0, "page"), f.event(1, "page"), f.event(2, "page")
    naive["sentAt"] = "2026-11-01T10:00:00"
    bad["receivedAt"] = "not a time"
    batch = parse_batch([msg(good, "1"), msg(naive, "2"), msg(bad, "3")])
    pages = batch.frames["pages"]
    assert list(pages["pubsub_message_id"]) == ["1", "2"]
    assert pages.iloc[1]["sent_at"] == ts("2026-11-01T10:00:00Z")
    assert batch.frames["rejected"].iloc[0]["reason"] == "invalid_timestamp"
    assert batch.frames["rejected"].iloc[0]["pubsub_message_id"] == "3"
