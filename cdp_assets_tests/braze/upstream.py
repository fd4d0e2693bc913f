"""Upstream tables in the TABLES.md shapes, written into a temp DuckDB: stand-ins for the Segment events and
Intercom assets, so the Braze assets can be tested on their own (the end-to-end test uses the real ones).

Users follow the shared universe: user n has userId/external_id ``u{n:07d}``, email ``user{n}@example.com``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from dagster import AssetSpec

from cdp_assets.braze.assets import CONTACTS, IDENTIFIES, TRACKS, table_of
from cdp_assets.shared.warehouse import WarehouseResource, WriteMode, WritePlan

BASE = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)

#: Stand-ins for the upstream assets (deps by key; the real ones live in other folders).
UPSTREAM_SPECS = [AssetSpec(k) for k in (IDENTIFIES, TRACKS, CONTACTS)]


def uid(n: int) -> str:
    return f"u{n:07d}"


def email(n: int) -> str:
    return f"user{n}@example.com"


def identify(
    n: int,
    i: int,
    traits: dict[str, Any],
    *,
    user: str | None = "auto",
    anonymous: str | None = None,
    mail: str | None = "auto",
) -> dict[str, Any]:
    at = BASE + dt.timedelta(minutes=i)
    return {
        "message_id": f"id-{n}-{i}",
        "user_id": uid(n) if user == "auto" else user,
        "anonymous_id": anonymous or f"anon-{n}",
        "traits": traits,
        "context": {"ip": "10.0.0.1"},
        "email": email(n) if mail == "auto" else mail,
        "timestamp": at,
        "received_at": at,
        "sent_at": at,
        "original_timestamp": at,
        "publish_time": at,
        "pubsub_message_id": f"ps-id-{n}-{i}",
    }


def track(
    n: int, i: int, event: str, properties: dict[str, Any], *, anonymous: bool = False
) -> dict[str, Any]:
    at = BASE + dt.timedelta(minutes=i, seconds=n)
    return {
        "message_id": f"tr-{n}-{i}",
        "user_id": None if anonymous else uid(n),
        "anonymous_id": f"anon-{n}",
        "event": event,
        "properties": properties,
        "context": {},
        "email": None if anonymous else email(n),
        "timestamp": at,
        "received_at": at,
        "sent_at": at,
        "original_timestamp": at,
        "publish_time": at,
        "pubsub_message_id": f"ps-tr-{n}-{i}",
    }


def contact(
    cid: str,
    *,
    external_id: str | None,
    mail: str | None,
    phone: str | None = None,
    name: str | None = None,
    role: str = "user",
    custom: dict[str, Any] | None = None,
    updated: int = 0,
    deleted: bool = False,
) -> dict[str, Any]:
    at = BASE + dt.timedelta(hours=updated)
    return {
        "id": cid,
        "external_id": external_id,
        "email": mail,
        "phone": phone,
        "name": name,
        "role": role,
        "custom_attributes": custom or {},
        "created_at": BASE,
        "updated_at": at,
        "deleted_at": at if deleted else None,
        "deleted_reason": "archived" if deleted else None,
    }


def write(wh: WarehouseResource, key, rows: list[dict[str, Any]], pk: str) -> None:
    df = pd.DataFrame(rows)
    for col in df.columns:
        if df[col].map(lambda v: isinstance(v, dict)).any():
            df[col] = df[col].map(lambda v: v if isinstance(v, dict) else None)
    # A column that is all-None in this batch must still be typed like the real producer's column.
    for col in ("deleted_at", "user_id", "external_id", "email", "phone", "name", "deleted_reason"):
        if col in df and df[col].isna().all():
            df[col] = pd.to_datetime(df[col], utc=True) if col == "deleted_at" else df[col].astype(object)
    wh.write(df, WritePlan(table_of(key), WriteMode.MERGE, (pk,)))


def baseline(wh: WarehouseResource, users: int = 5) -> None:
    """Users 0..users-1 identified in Segment (two identifies each, the second partial), known in Intercom
    with custom attributes, one anonymous tracker, and three leads (stitched, email-only, phone-only)."""
    ids = []
    for n in range(users):
        ids.append(
            identify(
                n,
                0,
                {
                    "email": email(n),
                    "name": f"User {n}",
                    "firstName": "User",
                    "plan": "free",
                    "company": {"name": f"Company {n}"},
                },
            )
        )
        ids.append(identify(n, 1, {"plan": "pro" if n % 2 else "free", "title": "Engineer"}))
    write(wh, IDENTIFIES, ids, "message_id")
    tracks = [
        track(n, i, "Order Completed", {"revenue": 10.5 * (i + 1), "sku": f"S{i}"})
        for n in range(users)
        for i in range(2)
    ]
    tracks.append(track(99, 0, "Page Scrolled", {"depth": 50}, anonymous=True))
    write(wh, TRACKS, tracks, "message_id")
    contacts = [
        contact(
            f"ic{n}",
            external_id=uid(n),
            mail=email(n),
            phone=f"+1555000{n:04d}",
            name=f"Intercom {n}",
            custom={"plan": "enterprise", "support_tier": "gold" if n % 2 else "silver"},
            updated=n,
        )
        for n in range(users)
    ]
    contacts += [
        contact(
            "lead-stitched",
            external_id=None,
            mail=email(0).upper(),
            role="lead",
            custom={"lead_source": "ads"},
        ),
        contact(
            "lead-email", external_id=None, mail="prospect@example.com", role="lead", custom={"score": 7}
        ),
        contact(
            "lead-phone",
            external_id=None,
            mail=None,
            phone="+1 555 999 0000",
            role="lead",
            custom={"score": 3},
        ),
        contact("gone", external_id=uid(users + 50), mail=email(users + 50), deleted=True, custom={"x": 1}),
    ]
    write(wh, CONTACTS, contacts, "id")
