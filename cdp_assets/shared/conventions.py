"""Conventions every asset follows: owners, kinds, groups. Applied by the catalogs, not repeated per asset."""

from __future__ import annotations

from .env import warehouse

OWNER = "team:data-platform"


def asset_kinds(source_kind: str, *more: str) -> set[str]:
    """Kinds shown in the UI: the source system, anything extra (e.g. 'pubsub'), and the warehouse."""
    return {source_kind, *more, warehouse().value}
