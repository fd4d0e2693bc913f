"""The one environment helper: every "which warehouse / which endpoints?" question is answered here.

Two switches, both plain environment variables read at definition-load time:

* ``CDP_WAREHOUSE`` = ``duckdb`` (default) | ``snowflake`` | ``bigquery`` | ``teradata``
* ``CDP_SOURCES``   = ``simulated`` (default: the bundled Segment/Intercom simulators and the Pub/Sub
  emulator on loopback) | ``live`` (the real APIs; tokens come from ``dagster.EnvVar``)

Which live host: ``CDP_SEGMENT_REGION`` (``us`` | ``eu``) and ``CDP_INTERCOM_REGION`` (``US`` | ``EU`` | ``AU``).

Secrets are never read here; resources receive them through ``dagster.EnvVar`` so they never appear in
code, config snapshots or logs.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path


class Warehouse(str, Enum):
    DUCKDB = "duckdb"
    SNOWFLAKE = "snowflake"
    BIGQUERY = "bigquery"
    TERADATA = "teradata"


class Sources(str, Enum):
    SIMULATED = "simulated"
    LIVE = "live"


class ConfigError(RuntimeError):
    """A setting is missing or wrong. The message names the variable to set, never a secret value."""


def _choice(var: str, enum: type[Enum], default: Enum) -> Enum:
    raw = os.environ.get(var, "").strip().lower()
    if not raw:
        return default
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise ConfigError(f"{var}={raw!r} is not a known value; set {var} to one of: {allowed}") from None


def warehouse() -> Warehouse:
    return _choice("CDP_WAREHOUSE", Warehouse, Warehouse.DUCKDB)  # type: ignore[return-value]


def sources() -> Sources:
    return _choice("CDP_SOURCES", Sources, Sources.SIMULATED)  # type: ignore[return-value]


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """Where local state lives (DuckDB file, simulator state). ``CDP_DATA_DIR`` overrides it."""
    path = Path(os.environ.get("CDP_DATA_DIR") or project_root() / "data")
    path.mkdir(parents=True, exist_ok=True)
    return path


def env_setting(var: str, default: str) -> str:
    """An optional (non-secret) setting, such as an API region."""
    return os.environ.get(var, "").strip() or default


def require_env(var: str, purpose: str) -> str:
    """Value of a required (non-secret) setting, or a ConfigError naming it."""
    value = os.environ.get(var)
    if not value:
        raise ConfigError(f"{var} is not set; it is required for {purpose}")
    return value
