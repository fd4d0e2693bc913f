"""Raw Pub/Sub message bytes -> one DataFrame per event table (plus the rejected table).

The table design is data: ``COMMON_COLUMNS`` for every event table and ``EVENT_TABLES`` (one row per Segment
event type) for the type's own fields. Parsing is one pass of ``orjson.loads`` per message plus cheap dict
lookups; each table's frame is then built column by column as Arrow arrays in the declared types (timestamps
through Arrow's C++ ISO-8601 cast, ~10x cheaper than ``datetime.fromisoformat`` per value; JSON columns
encoded once with ``orjson.dumps``), so the warehouse layer writes them without inferring or converting
anything (``WritePlan.encoded_json``): measured, that halved the write's CPU (45 -> 20 us an event).

What is rejected (never dropped; see ``Reject``): payloads over Segment's 32 KB limit, invalid UTF-8 or JSON,
JSON that is not an object, a missing or unknown ``type``, a missing/over-long ``messageId`` (spec: at most 100
characters), neither ``userId`` nor ``anonymousId``, a missing required per-type field (``event``, ``groupId``,
``previousId``, alias ``userId``), a field of the wrong JSON type, and an unparseable timestamp.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple, Sequence

import orjson
import pandas as pd
import pyarrow as pa

from ..shared.warehouse import JSON_ENCODE_OPTION, Column, LogicalType

MAX_PAYLOAD_BYTES = 32 * 1024  # Segment accepts at most 32 KB per message (contract A.2)
MAX_MESSAGE_ID_CHARS = 100  # spec-field-message-id.md


@dataclass(frozen=True)
class TypeField:
    """A per-type column: taken from the event's top-level ``source`` key."""

    column: str
    source: str
    kind: str  # "string" | "json"
    required: bool = False


@dataclass(frozen=True)
class EventTable:
    event_type: str  # Segment's `type`
    table: str  # asset key ["segment_events", table]
    fields: tuple[TypeField, ...]
    description: str
    email_from_traits: bool = False  # identify: traits.email is the user's; group traits.email is the company's
    requires_user_id: bool = False  # alias: userId is the new id and is mandatory


#: One row per Segment event type (contract A.2). Names follow the reference DDL where it had a column.
EVENT_TABLES: tuple[EventTable, ...] = (
    EventTable("track", "tracks", (TypeField("event", "event", "string", required=True),
                                   TypeField("properties", "properties", "json")),
               "Segment track calls: one row per messageId, with the event name and its properties."),
    EventTable("identify", "identifies", (TypeField("traits", "traits", "json"),),
               "Segment identify calls: one row per messageId, with the user's traits and email.",
               email_from_traits=True),
    EventTable("page", "pages", (TypeField("page", "name", "string"), TypeField("category", "category", "string"),
                                 TypeField("properties", "properties", "json")),
               "Segment page calls: one row per messageId, with page name, category and properties."),
    EventTable("screen", "screens", (TypeField("screen", "name", "string"),
                                     TypeField("properties", "properties", "json")),
               "Segment screen calls: one row per messageId, with screen name and properties."),
    EventTable("group", "groups", (TypeField("group_id", "groupId", "string", required=True),
                                   TypeField("traits", "traits", "json")),
               "Segment group calls: one row per messageId, with the group id and the group's traits."),
    EventTable("alias", "aliases", (TypeField("previous_id", "previousId", "string", required=True),),
               "Segment alias calls: one row per messageId linking previous_id to user_id.",
               requires_user_id=True),
)
BY_TYPE = {t.event_type: t for t in EVENT_TABLES}
REJECTED_TABLE = "rejected"
ALL_TABLES = tuple(t.table for t in EVENT_TABLES) + (REJECTED_TABLE,)

#: Columns of every event table, in order. Timestamps are the four Segment times plus Pub/Sub's publish time.
COMMON_COLUMNS = (
    "message_id", "user_id", "anonymous_id", "email",
    "timestamp", "original_timestamp", "sent_at", "received_at",
    "context", "integrations", "channel", "version", "extra",
)
SEGMENT_TIMES = (("timestamp", "timestamp"), ("original_timestamp", "originalTimestamp"),
                 ("sent_at", "sentAt"), ("received_at", "receivedAt"))
LINEAGE_COLUMNS = ("publish_time", "pubsub_message_id", "loaded_at")
#: Top-level keys that have a column. Any other top-level key goes to the ``extra`` JSON column, so nothing in
#: an event is lost without paying for a full raw copy (~1.2 KB a row, ~40% of the write cost).
MAPPED_KEYS = frozenset({"type", "messageId", "userId", "anonymousId", "timestamp", "originalTimestamp", "sentAt",
                         "receivedAt", "context", "integrations", "channel", "version", "event", "properties",
                         "traits", "name", "category", "groupId", "previousId"})
REJECTED_COLUMNS = ("pubsub_message_id", "publish_time", "reason", "detail", "message_id", "event_type",
                    "payload_bytes", "raw_payload", "raw_payload_base64", "attributes", "loaded_at")
PRIMARY_KEYS = {**{t.table: ("message_id",) for t in EVENT_TABLES}, REJECTED_TABLE: ("pubsub_message_id",)}
#: Logical types of the columns above; a per-type field's type is its ``TypeField.kind``.
_COLUMN_TYPES = {
    **dict.fromkeys(("timestamp", "original_timestamp", "sent_at", "received_at", "publish_time", "loaded_at"),
                    LogicalType.TIMESTAMP),
    **dict.fromkeys(("context", "integrations", "extra", "attributes"), LogicalType.JSON),
    "payload_bytes": LogicalType.BIGINT,
}


def table_columns(table: str) -> list[Column]:
    """The columns of one event table, in the order the loader writes them (its definition's column schema)."""
    if table == REJECTED_TABLE:
        return [Column(c, _COLUMN_TYPES.get(c, LogicalType.STRING)) for c in REJECTED_COLUMNS]
    spec = next(t for t in EVENT_TABLES if t.table == table)
    fields = [Column(f.column, LogicalType(f.kind)) for f in spec.fields]
    common = [Column(c, _COLUMN_TYPES.get(c, LogicalType.STRING)) for c in COMMON_COLUMNS]
    lineage = [Column(c, _COLUMN_TYPES.get(c, LogicalType.STRING)) for c in LINEAGE_COLUMNS]
    return [*common, *fields, *lineage]


class RawMessage(NamedTuple):
    """What the loader keeps of a pulled message: no proto-plus objects (they cost ~13 us each).

    A NamedTuple because the loader makes one per message and it is ~3x cheaper than a dataclass."""

    data: bytes
    pubsub_message_id: str
    publish_time_ns: int
    attributes: dict[str, str] | None = None


class Reject(Exception):
    """Why a message cannot be loaded (``reason`` is a short code, ``detail`` says more)."""

    def __init__(self, reason: str, detail: str = "", message_id: Any = None, event_type: Any = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail
        self.message_id = message_id if isinstance(message_id, str) else None
        self.event_type = event_type if isinstance(event_type, str) else None


@dataclass
class ParsedBatch:
    frames: dict[str, pd.DataFrame]  # table -> frame (every table in ALL_TABLES, possibly empty)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return self.counts.get(REJECTED_TABLE, 0)


# ------------------------------------------------------------------------------------------ one event


def _text(value: Any, key: str, etype: str, mid: Any) -> str | None:
    if value is None or value == "":
        return None
    if type(value) is str:
        return value
    if type(value) in (int, float):  # some libraries send numeric ids; the column is text
        return str(value)
    raise Reject("invalid_field", f"{key} must be a string, got {type(value).__name__}", mid, etype)


def _obj(value: Any, key: str, etype: str, mid: Any) -> dict:
    if value is None:
        return {}  # absent == empty object in Segment's semantics; keeps the column's type JSON from batch one
    if type(value) is dict:
        return value
    raise Reject("invalid_field", f"{key} must be an object, got {type(value).__name__}", mid, etype)


def _time(value: Any, key: str, etype: str, mid: Any) -> str | None:
    if value is None or type(value) is str:
        return value  # validated per column, vectorised, in _frame()
    raise Reject("invalid_timestamp", f"{key} must be an ISO-8601 string, got {type(value).__name__}", mid, etype)


def _spec_of(etype: Any, mid: Any) -> EventTable:
    if not etype:
        raise Reject("missing_type", "no `type`", mid)
    spec = BY_TYPE.get(etype.lower()) if type(etype) is str else None  # Segment routes case-insensitively
    if spec is None:
        raise Reject("unknown_type", f"type {str(etype)[:50]!r} is not one of {sorted(BY_TYPE)}", mid, etype)
    return spec


def parse_event(data: bytes) -> tuple[EventTable, tuple]:
    """One raw payload -> (its table, its row of COMMON_COLUMNS + per-type fields). Raises Reject.

    Written for speed (this runs once per event): direct dict access and type() checks, helpers only on
    the unusual path.
    """
    if len(data) > MAX_PAYLOAD_BYTES:
        raise Reject("payload_too_large", f"{len(data)} bytes > {MAX_PAYLOAD_BYTES} (Segment's 32 KB limit)")
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Reject("invalid_json", str(exc)[:200]) from None
    if type(event) is not dict:
        raise Reject("not_an_object", f"top-level JSON is {type(event).__name__}")
    get = event.get
    etype, mid = get("type"), get("messageId")
    spec = BY_TYPE.get(etype) if type(etype) is str else None
    if spec is None:
        spec = _spec_of(etype, mid)
    if type(mid) is not str or not mid:
        raise Reject("missing_message_id", "`messageId` must be a non-empty string", None, etype)
    if len(mid) > MAX_MESSAGE_ID_CHARS:
        raise Reject("message_id_too_long", f"{len(mid)} characters > {MAX_MESSAGE_ID_CHARS}", None, etype)
    user_id, anonymous_id = get("userId"), get("anonymousId")
    if type(user_id) is not str or not user_id:
        user_id = _text(user_id, "userId", etype, mid)
    if type(anonymous_id) is not str or not anonymous_id:
        anonymous_id = _text(anonymous_id, "anonymousId", etype, mid)
    if user_id is None and anonymous_id is None:
        raise Reject("missing_identity", "neither `userId` nor `anonymousId` is set", mid, etype)
    if spec.requires_user_id and user_id is None:
        raise Reject("missing_field", "alias needs `userId` (the new id)", mid, etype)
    context = get("context")
    if type(context) is not dict:
        context = _obj(context, "context", etype, mid)
    integrations = get("integrations")
    if type(integrations) is not dict:
        integrations = _obj(integrations, "integrations", etype, mid)
    own: list[Any] = []
    for f in spec.fields:
        value = get(f.source)
        if f.kind == "json":
            if type(value) is not dict:
                value = _obj(value, f.source, etype, mid)
        elif type(value) is not str or not value:
            value = _text(value, f.source, etype, mid)
        if f.required and value is None:
            raise Reject("missing_field", f"{etype} needs `{f.source}`", mid, etype)
        own.append(value)
    email = None
    if spec.email_from_traits:
        traits = get("traits")
        email = traits.get("email") if type(traits) is dict else None
    if email is None:
        ctraits = context.get("traits")
        email = ctraits.get("email") if type(ctraits) is dict else None
    times = [get("timestamp"), get("originalTimestamp"), get("sentAt"), get("receivedAt")]
    for i, value in enumerate(times):
        if value is not None and type(value) is not str:
            _time(value, SEGMENT_TIMES[i][1], etype, mid)
    channel, version = get("channel"), get("version")
    extra = {} if event.keys() <= MAPPED_KEYS else {k: v for k, v in event.items() if k not in MAPPED_KEYS}
    if channel is not None and type(channel) is not str:
        channel = _text(channel, "channel", etype, mid)
    return spec, (
        mid, user_id, anonymous_id, email if type(email) is str else None, *times,
        context, integrations, channel,
        None if version is None else str(version),  # examples show both 2 and "1.1"
        extra, *own,
    )


# ------------------------------------------------------------------------------------------ batches


def parse_batch(messages: Sequence[RawMessage], loaded_at: dt.datetime | None = None) -> ParsedBatch:
    """Parse a batch into every table's frame. Never raises for bad input: bad messages become rejected rows."""
    loaded_at = loaded_at or dt.datetime.now(dt.timezone.utc)
    rows: dict[str, list[tuple]] = {t.table: [] for t in EVENT_TABLES}
    lineage: dict[str, list[RawMessage]] = {t.table: [] for t in EVENT_TABLES}
    rejects: list[tuple[RawMessage, Reject]] = []
    for msg in messages:
        try:
            spec, row = parse_event(msg.data)
        except Reject as rej:
            rejects.append((msg, rej))
            continue
        rows[spec.table].append(row)
        lineage[spec.table].append(msg)
    frames: dict[str, pd.DataFrame] = {}
    for spec in EVENT_TABLES:
        frame, bad = _frame(spec, rows[spec.table], lineage[spec.table], loaded_at)
        frames[spec.table] = frame
        rejects.extend(bad)
    frames[REJECTED_TABLE] = rejected_frame(rejects, loaded_at)
    return ParsedBatch(frames, {name: len(f) for name, f in frames.items()})


def _frame(spec: EventTable, rows: list[tuple], msgs: list[RawMessage], loaded_at: dt.datetime
           ) -> tuple[pd.DataFrame, list[tuple[RawMessage, Reject]]]:
    """The table's rows as a frame of Arrow-backed columns in their declared types (text, UTC timestamps, JSON
    text), which the warehouse layer writes as they are; rows with an unparseable timestamp become rejects."""
    columns = list(COMMON_COLUMNS) + [f.column for f in spec.fields]
    values = list(zip(*rows)) if rows else [()] * len(columns)
    arrays: dict[str, pa.Array] = {}
    bad: dict[int, str] = {}
    for name, column in zip(columns, values):
        kind = _COLUMN_TYPES.get(name) or _FIELD_KINDS.get(name, LogicalType.STRING)
        if kind is LogicalType.TIMESTAMP:
            arrays[name], invalid = utc_array(column)
            for i in invalid:
                bad.setdefault(i, _SOURCE_OF[name])
        elif kind is LogicalType.JSON:  # dicts from orjson.loads: encode back (never None, see _obj)
            arrays[name] = pa.array([_dumps(v, option=JSON_ENCODE_OPTION, default=str) for v in column], pa.binary()).cast(pa.string())
        else:
            arrays[name] = pa.array(column, pa.string())
    arrays["publish_time"] = pa.array([m.publish_time_ns // 1000 for m in msgs], pa.int64()).cast(_UTC_US)
    arrays["pubsub_message_id"] = pa.array([m.pubsub_message_id for m in msgs], pa.string())
    arrays["loaded_at"] = pa.array([loaded_at] * len(msgs), _UTC_US)
    table = pa.table(arrays)
    rejects: list[tuple[RawMessage, Reject]] = []
    if bad:
        for i, source in sorted(bad.items()):
            rejects.append((msgs[i], Reject("invalid_timestamp", f"`{source}` is not ISO-8601: "
                                            f"{rows[i][COMMON_COLUMNS.index(_column_of(source))]!r:.80}",
                                            rows[i][0], spec.event_type)))
        keep = [i not in bad for i in range(len(msgs))]
        table = table.filter(pa.array(keep, pa.bool_()))
    return table.to_pandas(types_mapper=pd.ArrowDtype), rejects


_UTC_US = pa.timestamp("us", tz="UTC")
_dumps = orjson.dumps
_FIELD_KINDS = {f.column: LogicalType(f.kind) for t in EVENT_TABLES for f in t.fields}
_SOURCE_OF = dict(SEGMENT_TIMES)
#: per table, the JSON columns ``_frame`` encodes itself (for ``WritePlan.encoded_json``)
ENCODED_JSON = {t.table: frozenset(c.name for c in table_columns(t.table) if c.type is LogicalType.JSON)
                for t in EVENT_TABLES}


def utc_array(values: Sequence[str | None]) -> tuple[pa.Array, list[int]]:
    """ISO-8601 strings -> a UTC timestamp array, and the positions of values that are not timestamps (NULL).

    Arrow's C++ ISO-8601 cast (~0.05 us a value) handles what Segment sends (``...Z`` or an offset); anything
    else (no zone, nanoseconds, garbage) takes pandas' slower, forgiving path, where zone-less means UTC.
    """
    text = pa.array(values, pa.string())
    try:
        return text.cast(_UTC_US), []
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        series = pd.Series(values, dtype=object)
        parsed = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
        invalid = series.notna() & parsed.isna()
        return pa.array(parsed.dt.as_unit("us"), _UTC_US), [int(i) for i in invalid[invalid].index]


def _column_of(source: str) -> str:
    return next(c for c, s in SEGMENT_TIMES if s == source)


def rejected_frame(rejects: Iterable[tuple[RawMessage, Reject]], loaded_at: dt.datetime) -> pd.DataFrame:
    records = [
        (m.pubsub_message_id, m.publish_time_ns, r.reason, r.detail or None, r.message_id, r.event_type,
         len(m.data), m.data.decode("utf-8", errors="replace"), base64.b64encode(m.data).decode("ascii"),
         dict(m.attributes) if m.attributes else {})
        for m, r in rejects
    ]
    df = pd.DataFrame.from_records(records, columns=list(REJECTED_COLUMNS[:-1])) if records else pd.DataFrame(
        {c: pd.Series([], dtype=object) for c in REJECTED_COLUMNS[:-1]})
    df["publish_time"] = pd.to_datetime(df["publish_time"].astype("int64"), unit="ns", utc=True)
    df["payload_bytes"] = df["payload_bytes"].astype("int64")
    df["loaded_at"] = pd.Series([loaded_at] * len(df), dtype="datetime64[ns, UTC]")
    return df
