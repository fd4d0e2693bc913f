"""From profiles and events to the rows Braze imports: change detection, UPDATED_AT, Braze's row rules.

* **Content hash.** Each user's desired attributes are serialised canonically (sorted keys) and hashed with
  the identifier. The state table keeps the last published hash and attributes per identifier; a user
  whose hash is unchanged gets no row, so a run with no upstream change publishes nothing and no
  UPDATED_AT moves.
* **Attribute deltas.** A changed user's PAYLOAD holds only the attributes that are new or changed since the
  last publication, plus ``null`` for attributes that disappeared (Braze removes an attribute on null, D.4).
  Braze bills every attribute it imports, so unchanged attributes are not re-sent.
* **Events** are published once per Segment ``message_id`` (a re-sent event would be a second event in Braze).
* **UPDATED_AT** is one UTC value per run and table, strictly after the table's previous maximum: Braze's
  boundary may be inclusive (D.5), so a new batch must never reuse the last synced value. The whole batch is
  one append, i.e. one transaction.
* **Rules** (D.3, D.4): exactly one identifier, no identifier inside PAYLOAD, at most 250 attributes, at most
  1 MB per row. A row that breaks one goes to ``braze/rejects`` whole, with the rule and the reason; it is
  not published, and its state is not advanced, so it is re-evaluated (and re-published once fixed) next run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import orjson
import pandas as pd

from .contract import ID_COLUMNS, MAX_ATTRIBUTES, MAX_ROW_BYTES, PAYLOAD_FORBIDDEN_KEYS, SYNC_COLUMN_NAMES
from .profiles import Conflict, EventRow, Profile

ONE_TICK = pd.Timedelta(microseconds=1)  # the finest precision every target keeps (DuckDB/BigQuery: µs)

USERS_STATE_COLUMNS = ("identifier", "content_hash", "attributes", "updated_at")
EVENTS_STATE_COLUMNS = ("message_id", "updated_at")
REJECT_COLUMNS = (
    "sync_table",
    "identifier",
    "rule",
    "reason",
    "content_hash",
    "external_id",
    "alias_name",
    "alias_label",
    "email",
    "phone",
    "payload",
    "payload_bytes",
    "attribute_count",
    "source",
    "rejected_at",
)
REJECT_KEY = ("sync_table", "identifier", "rule", "content_hash")


def canonical_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()


def content_hash(identifier: str, canonical: str) -> str:
    return hashlib.sha256(f"{identifier}\n{canonical}".encode()).hexdigest()


def next_updated_at(previous_max: Any, now: dt.datetime) -> pd.Timestamp:
    """``now`` (UTC, µs), but always strictly after the previous maximum, even if the clock went back."""
    stamp = pd.Timestamp(now).tz_convert("UTC").floor("us")
    if previous_max is None or pd.isna(previous_max):
        return stamp
    prev = pd.Timestamp(previous_max)
    prev = prev.tz_localize("UTC") if prev.tz is None else prev.tz_convert("UTC")
    return max(stamp, prev.floor("us") + ONE_TICK)


def attribute_delta(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """What takes Braze from ``previous`` to ``current``: new or changed values, ``None`` for removals."""
    delta = {
        k: v
        for k, v in current.items()
        if k not in previous or canonical_json(previous[k]) != canonical_json(v)
    }
    delta.update({k: None for k in previous if k not in current})
    return delta


# ------------------------------------------------------------------------------------------ rules


def row_violations(
    ids: Mapping[str, str | None], payload: Mapping[str, Any], payload_text: str, count_attributes: bool
) -> list[tuple[str, str]]:
    """Every Braze rule the row breaks, as (rule, reason). Empty means publishable."""
    problems: list[tuple[str, str]] = []
    alias = [ids.get("ALIAS_NAME"), ids.get("ALIAS_LABEL")]
    kinds = [c for c in ("EXTERNAL_ID", "BRAZE_ID", "EMAIL", "PHONE") if ids.get(c)]
    if all(alias):
        kinds.append("ALIAS_NAME+ALIAS_LABEL")
    elif any(alias):
        problems.append(("incomplete_alias", "ALIAS_NAME and ALIAS_LABEL must be set together"))
    if not kinds and not any(alias):
        problems.append(("no_identifier", "the row has no identifier; Braze needs exactly one"))
    elif len(kinds) > 1:
        problems.append(
            (
                "two_identifiers",
                f"the row has {len(kinds)} identifiers ({', '.join(kinds)}); Braze needs exactly one",
            )
        )
    inside = sorted(PAYLOAD_FORBIDDEN_KEYS & set(payload))
    if inside:
        problems.append(("identifier_in_payload", f"PAYLOAD contains identifier key(s) {inside}"))
    if count_attributes and len(payload) > MAX_ATTRIBUTES:
        problems.append(
            (
                "too_many_attributes",
                f"{len(payload)} attributes; Braze accepts at most {MAX_ATTRIBUTES} per row",
            )
        )
    size = row_bytes(ids, payload_text)
    if size > MAX_ROW_BYTES:
        problems.append(
            (
                "payload_too_large",
                f"row is {size:,} bytes; Braze rejects rows over 1 MB ({MAX_ROW_BYTES:,} bytes)",
            )
        )
    return problems


def row_bytes(ids: Mapping[str, str | None], payload_text: str) -> int:
    return len(payload_text.encode()) + sum(len(v.encode()) for v in ids.values() if v)


# ------------------------------------------------------------------------------------------ plans


@dataclass
class Plan:
    """What one run writes for one sync table."""

    rows: pd.DataFrame  # the sync table's new rows (exactly the contract's columns)
    state: pd.DataFrame  # state rows to merge
    rejects: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0


def _reject(
    sync_table: str,
    identifier: str,
    rule: str,
    reason: str,
    ids: Mapping[str, str | None],
    payload_text: str,
    attribute_count: int | None,
    source: str,
    digest: str,
    at: pd.Timestamp,
) -> dict[str, Any]:
    return {
        "sync_table": sync_table,
        "identifier": identifier,
        "rule": rule,
        "reason": reason,
        "content_hash": digest,
        "external_id": ids.get("EXTERNAL_ID"),
        "alias_name": ids.get("ALIAS_NAME"),
        "alias_label": ids.get("ALIAS_LABEL"),
        "email": ids.get("EMAIL"),
        "phone": ids.get("PHONE"),
        "payload": payload_text,
        "payload_bytes": len(payload_text.encode()),
        "attribute_count": attribute_count,
        "source": source,
        "rejected_at": at,
    }


def plan_users(
    sync_table: str,
    profiles: Sequence[Profile],
    conflicts: Sequence[Conflict],
    state: Mapping[str, tuple[str, dict[str, Any]]],
    updated_at: pd.Timestamp,
) -> Plan:
    """Rows for users whose content changed since the state, state for them, and rejects."""
    rows, new_state, rejects, unchanged = [], [], [], 0
    for p in profiles:
        key = p.identity.key
        canonical = canonical_json(p.attributes)
        digest = content_hash(key, canonical)
        previous = state.get(key)
        if previous is not None and previous[0] == digest:
            unchanged += 1
            continue
        payload = attribute_delta(previous[1] if previous else {}, p.attributes)
        text = canonical_json(payload)
        ids = p.identity.columns()
        problems = row_violations(ids, payload, text, count_attributes=True)
        if problems:
            rejects += [
                _reject(
                    sync_table,
                    key,
                    rule,
                    reason,
                    ids,
                    text,
                    len(payload),
                    "; ".join(p.sources),
                    digest,
                    updated_at,
                )
                for rule, reason in problems
            ]
            continue
        rows.append({"UPDATED_AT": updated_at, **ids, "PAYLOAD": text})
        new_state.append(
            {"identifier": key, "content_hash": digest, "attributes": canonical, "updated_at": updated_at}
        )
    for c in conflicts:
        text = canonical_json(c.attributes)
        rejects.append(
            _reject(
                sync_table,
                c.identifier,
                c.rule,
                c.reason,
                c.identity_columns,
                text,
                len(c.attributes),
                c.source,
                content_hash(c.identifier, text),
                updated_at,
            )
        )
    return Plan(sync_frame(rows), frame(new_state, USERS_STATE_COLUMNS), rejects, unchanged)


def plan_events(sync_table: str, events: Iterable[EventRow], updated_at: pd.Timestamp) -> Plan:
    """Rows for events not published before (the caller filters by message_id), state, and rejects."""
    rows, new_state, rejects = [], [], []
    for e in events:
        text = orjson.dumps(e.payload, default=str).decode()
        ids = e.identity.columns() if e.identity else dict.fromkeys(ID_COLUMNS)
        problems = row_violations(ids, e.payload, text, count_attributes=False)
        if "name" not in e.payload:
            problems.append(("missing_event_name", "a Braze custom event needs a name"))
        if problems:
            key = f"message_id:{e.message_id}"
            rejects += [
                _reject(
                    sync_table,
                    key,
                    rule,
                    reason,
                    ids,
                    text,
                    None,
                    "segment_events.tracks",
                    content_hash(key, text),
                    updated_at,
                )
                for rule, reason in problems
            ]
            continue
        rows.append({"UPDATED_AT": updated_at, **ids, "PAYLOAD": text})
        new_state.append({"message_id": e.message_id, "updated_at": updated_at})
    return Plan(sync_frame(rows), frame(new_state, EVENTS_STATE_COLUMNS), rejects)


# ------------------------------------------------------------------------------------------ frames

_DTYPES = {
    "updated_at": "datetime64[ns, UTC]",
    "UPDATED_AT": "datetime64[ns, UTC]",
    "rejected_at": "datetime64[ns, UTC]",
    "payload_bytes": "Int64",
    "attribute_count": "Int64",
}


def frame(records: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """Records as a frame whose column types are fixed even when it is empty (the first write creates the
    table from it, and an untyped empty column would be created as text)."""
    df = pd.DataFrame.from_records(list(records), columns=list(columns))
    for col in columns:
        dtype = _DTYPES.get(col)
        if dtype:
            df[col] = (
                pd.to_datetime(df[col], utc=True) if dtype.startswith("datetime") else df[col].astype(dtype)
            )
        else:
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def sync_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    return frame(rows, SYNC_COLUMN_NAMES)


def rejects_frame(rejects: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    return frame(rejects, REJECT_COLUMNS)
