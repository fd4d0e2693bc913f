"""Who a row is about and what it says: user profiles from Segment identifies + Intercom contacts, and custom
events from Segment tracks. Pure functions over DataFrames in the TABLES.md shapes; no I/O here.

Identity (one identifier per row, contract D.3), chosen in ``ID_ORDER``:

1. ``EXTERNAL_ID`` — Segment ``user_id`` / Intercom ``external_id`` (equal for the same person);
2. alias — Segment ``anonymous_id`` as ``ALIAS_NAME`` with ``ALIAS_LABEL='segment_anonymous_id'``;
3. ``EMAIL`` — an Intercom contact without external id;
4. ``PHONE`` — an Intercom contact with neither external id nor email.

An Intercom contact without external id whose email belongs to exactly one known external id is *stitched* to
that user (its attributes land on the known profile). If the email belongs to two or more external ids the
contact would need two identifiers; it is rejected (``two_identifiers``) instead of guessing.

Attribute precedence when both sources know a key: **Segment wins**. Identify traits are what the product
asserts about a signed-in user, ordered by event time per trait; Intercom's ``updated_at`` is per contact, so
it cannot say which attribute is newer. Intercom fills the keys Segment does not know. Within Segment the
latest identify per trait wins (traits are folded in ``timestamp`` order, so a partial identify keeps earlier
traits). Within Intercom the contact carrying the external id wins over stitched leads, then the most
recently updated contact.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

import orjson
import pandas as pd

from .contract import ID_COLUMNS, PAYLOAD_FORBIDDEN_KEYS, SEGMENT_ANONYMOUS_LABEL, IdKind

#: Segment traits that are identifiers (D.4 keeps them out of PAYLOAD); email/phone are still used to stitch.
SEGMENT_ID_TRAITS = (
    frozenset({"id", "userId", "user_id", "anonymousId", "anonymous_id"}) | PAYLOAD_FORBIDDEN_KEYS
)
#: Segment reserved traits with a Braze standard attribute of another name.
SEGMENT_RENAMES = {"firstName": "first_name", "lastName": "last_name"}
#: Intercom contact columns that become attributes (custom_attributes are merged in as they are).
INTERCOM_FIELDS = {"name": "name", "role": "intercom_role"}

IDENTIFY_COLUMNS = ["message_id", "user_id", "anonymous_id", "email", "traits", "timestamp", "received_at"]
CONTACT_COLUMNS = [
    "id",
    "external_id",
    "email",
    "phone",
    "name",
    "role",
    "custom_attributes",
    "updated_at",
    "deleted_at",
]
TRACK_COLUMNS = [
    "message_id",
    "user_id",
    "anonymous_id",
    "email",
    "event",
    "properties",
    "timestamp",
    "received_at",
]


@dataclass(frozen=True, slots=True)
class Identity:
    kind: IdKind
    value: str
    label: str | None = None  # alias label

    @property
    def key(self) -> str:
        """Stable text form, the state table's primary key: ``external_id:u0000001``."""
        if self.kind is IdKind.ALIAS:
            return f"alias:{self.label}:{self.value}"
        return f"{self.kind.value}:{self.value}"

    def columns(self) -> dict[str, str | None]:
        """The sync row's identifier columns: exactly one kind set."""
        row: dict[str, str | None] = dict.fromkeys(ID_COLUMNS)
        if self.kind is IdKind.EXTERNAL_ID:
            row["EXTERNAL_ID"] = self.value
        elif self.kind is IdKind.ALIAS:
            row["ALIAS_NAME"], row["ALIAS_LABEL"] = self.value, self.label
        elif self.kind is IdKind.EMAIL:
            row["EMAIL"] = self.value
        else:
            row["PHONE"] = self.value
        return row


@dataclass
class Profile:
    identity: Identity
    attributes: dict[str, Any]  # desired state; a key absent here should not exist in Braze
    sources: list[str] = field(default_factory=list)  # where it came from, for rejects and debugging


@dataclass
class Conflict:
    """A source record that cannot be published under exactly one identifier."""

    rule: str
    reason: str
    identity_columns: dict[str, str | None]
    identifier: str
    attributes: dict[str, Any]
    source: str


# ------------------------------------------------------------------------------------------ helpers


def _text(v: Any) -> str | None:
    if type(v) is str:  # the common case first: this runs once per identifier per row
        return v.strip() or None
    if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NA or v is pd.NaT:
        return None
    return str(v).strip() or None


def normalise_email(v: Any) -> str | None:
    s = _text(v)
    return s.lower() if s else None


def normalise_phone(v: Any) -> str | None:
    s = _text(v)
    return "".join(s.split()) if s else None


def json_object(v: Any) -> dict[str, Any]:
    """A JSON column's value as a dict (DuckDB/Snowflake return text, some drivers return dicts)."""
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return {}
    if isinstance(v, dict):
        return v
    parsed = orjson.loads(v)
    return parsed if isinstance(parsed, dict) else {}


def _is_null(v: Any) -> bool:
    return v is None or v is pd.NaT or (isinstance(v, float) and pd.isna(v))


def segment_identity(user_id: Any, anonymous_id: Any, email: Any = None) -> Identity | None:
    if uid := _text(user_id):
        return Identity(IdKind.EXTERNAL_ID, uid)
    if anon := _text(anonymous_id):
        return Identity(IdKind.ALIAS, anon, SEGMENT_ANONYMOUS_LABEL)
    if mail := normalise_email(email):
        return Identity(IdKind.EMAIL, mail)
    return None


def _traits_to_attributes(traits: dict[str, Any]) -> dict[str, Any]:
    return {SEGMENT_RENAMES.get(k, k): v for k, v in traits.items() if k not in SEGMENT_ID_TRAITS}


def _contact_attributes(name: Any, role: Any, custom_attributes: Any) -> dict[str, Any]:
    attrs = {out: (None if _is_null(v) else v) for out, v in zip(INTERCOM_FIELDS.values(), (name, role))}
    custom = json_object(custom_attributes)
    attrs.update({k: v for k, v in custom.items() if k not in PAYLOAD_FORBIDDEN_KEYS})
    return attrs


def _columns(df: pd.DataFrame, names: list[str]) -> Iterable[tuple]:
    """Rows as plain tuples of the named columns: far cheaper than ``itertuples`` over datetime columns,
    which builds a Timestamp per value (the loops below only need the order, not the times)."""
    return zip(*(df[n].tolist() for n in names))


def _sorted(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return df.sort_values(by, kind="stable", na_position="first") if not df.empty else df


# ------------------------------------------------------------------------------------------ users


def segment_profiles(identifies: pd.DataFrame) -> tuple[dict[Identity, dict[str, Any]], dict[str, set[str]]]:
    """Traits folded per user in event order, and which external ids each email has been seen with."""
    folded: dict[Identity, dict[str, Any]] = defaultdict(dict)
    emails: dict[str, set[str]] = defaultdict(set)
    ordered = _sorted(identifies, ["timestamp", "received_at", "message_id"])
    for user_id, anonymous_id, traits, email in _columns(
        ordered, ["user_id", "anonymous_id", "traits", "email"]
    ):
        ident = segment_identity(user_id, anonymous_id)
        if ident is None:
            continue  # the events loader rejects these already (Segment requires one of the two)
        folded[ident].update(_traits_to_attributes(json_object(traits)))
        if ident.kind is IdKind.EXTERNAL_ID and (mail := normalise_email(email)):
            emails[mail].add(ident.value)
    return dict(folded), emails


def build_user_profiles(
    identifies: pd.DataFrame, contacts: pd.DataFrame
) -> tuple[list[Profile], list[Conflict]]:
    """One profile per identifier with its merged attributes, plus the records that cannot be published."""
    segment, email_owners = segment_profiles(identifies)
    active = contacts[contacts["deleted_at"].isna()] if not contacts.empty else contacts
    for external_id, email in _columns(
        active, ["external_id", "email"]
    ):  # Intercom users, for stitching leads
        if (ext := _text(external_id)) and (mail := normalise_email(email)):
            email_owners[mail].add(ext)

    intercom: dict[Identity, dict[str, Any]] = defaultdict(dict)
    sources: dict[Identity, list[str]] = defaultdict(list)
    conflicts: list[Conflict] = []
    # Fold leads first and external-id contacts last, each by updated_at: the later fold wins a key.
    ordered = (
        active.assign(_has_ext=active["external_id"].map(lambda v: _text(v) is not None))
        if not active.empty
        else active
    )
    names = ["id", "external_id", "email", "phone", "name", "role", "custom_attributes"]
    for cid, external_id, email, phone, name, role, custom in _columns(
        _sorted(ordered, ["_has_ext", "updated_at", "id"]), names
    ):
        source = f"intercom.contacts id={cid}"
        attrs = _contact_attributes(name, role, custom)
        ident, conflict = _contact_identity(external_id, email, phone, email_owners, attrs, source)
        if conflict is not None:
            conflicts.append(conflict)
            continue
        if ident is None:
            conflicts.append(
                Conflict(
                    "no_identifier",
                    "Intercom contact has no external_id, email or phone",
                    dict.fromkeys(ID_COLUMNS),
                    f"intercom:{cid}",
                    _drop_nulls(attrs),
                    source,
                )
            )
            continue
        intercom[ident].update(attrs)
        sources[ident].append(source)

    profiles = []
    for ident in sorted(set(segment) | set(intercom), key=lambda i: i.key):
        merged = {**intercom.get(ident, {}), **segment.get(ident, {})}  # Segment wins a shared key
        src = (["segment_events.identifies"] if ident in segment else []) + sources.get(ident, [])
        profiles.append(Profile(ident, _drop_nulls(merged), src))
    return profiles, conflicts


def _contact_identity(
    external_id: Any,
    email: Any,
    phone: Any,
    email_owners: dict[str, set[str]],
    attrs: dict[str, Any],
    source: str,
) -> tuple[Identity | None, Conflict | None]:
    if ext := _text(external_id):
        return Identity(IdKind.EXTERNAL_ID, ext), None
    mail = normalise_email(email)
    if mail:
        owners = sorted(email_owners.get(mail, ()))
        if len(owners) == 1:
            return Identity(IdKind.EXTERNAL_ID, owners[0]), None  # stitched to the known user
        if len(owners) > 1:
            reason = (
                f"Intercom contact without external_id has email {mail}, which belongs to {len(owners)} "
                "users "
                f"(EXTERNAL_ID {', '.join(owners)}): the row would need two identifiers, and by email Braze "
                "would update whichever of them changed last"
            )
            cols = Identity(IdKind.EMAIL, mail).columns() | {"EXTERNAL_ID": ", ".join(owners)}
            return None, Conflict(
                "two_identifiers", reason, cols, f"email:{mail}", _drop_nulls(attrs), source
            )
        return Identity(IdKind.EMAIL, mail), None
    if number := normalise_phone(phone):
        return Identity(IdKind.PHONE, number), None
    return None, None


def _drop_nulls(attrs: dict[str, Any]) -> dict[str, Any]:
    """Desired state: a null (or absent) attribute should not exist; removals are sent as explicit nulls."""
    return {k: v for k, v in attrs.items() if v is not None}


# ------------------------------------------------------------------------------------------ events


@dataclass
class EventRow:
    message_id: str
    identity: Identity | None
    payload: dict[str, Any]


def braze_times(stamps: pd.Series) -> list[str | None]:
    """ISO-8601 UTC with milliseconds, as Segment sends it (``2026-11-01T12:00:00.123Z``); Braze accepts
    ISO-8601 (D.6). Vectorised: one strftime over the column."""
    utc = pd.to_datetime(stamps, utc=True)
    text = utc.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:23] + "Z"
    return text.astype(object).where(utc.notna(), None).tolist()


def event_rows(tracks: pd.DataFrame) -> Iterable[EventRow]:
    """One Braze custom event per Segment track call: ``{name, time, properties}``."""
    times = braze_times(tracks["timestamp"].fillna(tracks["received_at"])) if not tracks.empty else []
    names = ["message_id", "user_id", "anonymous_id", "email", "event", "properties"]
    for (mid, user_id, anonymous_id, email, event, properties), time in zip(_columns(tracks, names), times):
        payload: dict[str, Any] = {"name": _text(event), "time": time, "properties": json_object(properties)}
        yield EventRow(
            str(mid),
            segment_identity(user_id, anonymous_id, email),
            {k: v for k, v in payload.items() if v is not None},
        )


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
