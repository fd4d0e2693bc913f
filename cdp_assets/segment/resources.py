"""``SegmentResource``: where the Segment API is (region, simulator or override) and how to read it.

* live (``CDP_SOURCES=live``): the region's host, the token from ``EnvVar("SEGMENT_API_TOKEN")``;
* simulated (the default) with no ``base_url``: ``open_client`` starts the bundled simulator in-process on an
  ephemeral loopback port for the duration of the step (deterministic: ``sim_seed``/``sim_scale``) with a
  dummy token, so ``dagster dev`` and the demo need no credentials;
* ``base_url`` set: that server (tests point it at a simulator they control), with ``token``.

The token is only ever handed to ``SegmentClient``, which puts it in one header and redacts it from every
message; it is never logged or written to metadata.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Optional

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from ..shared.env import ConfigError, Sources, env_setting, sources
from .client import HOSTS, PAGE_SIZE, TOKEN_VARIABLE, SegmentClient
from .extract import MAX_DELIVERY_WINDOW_DAYS

SIMULATOR_TOKEN = "simulated-workspace-token"


class SegmentResource(ConfigurableResource):
    """Segment Public API access for the ``segment`` assets."""

    mode: str = Field(default="simulated", description="'simulated' (bundled simulator) or 'live' (the real API).")
    region: str = Field(default="us", description="Workspace region: 'us' (api.segmentapis.com) or 'eu' (eu1.api.segmentapis.com).")
    token: Optional[str] = Field(default=None, description=f"Workspace token; in live mode EnvVar('{TOKEN_VARIABLE}').")
    base_url: Optional[str] = Field(default=None, description="Override the host (tests, proxies).")
    fail_on_not_entitled: bool = Field(default=False, description="Fail instead of warning when a gated object answers 403.")
    secrets: str = Field(default="hash", description="What to do with write keys and secret-like settings: 'hash' or 'drop'.")
    page_size: int = Field(default=PAGE_SIZE, description="pagination.count (200 is valid for every API version).")
    timeout_seconds: float = 30.0
    max_attempts: int = 6
    backoff_base_seconds: float = 0.5
    max_rate_limit_wait_seconds: float = 3600.0
    audit_overlap_minutes: int = Field(default=60, description="Re-read this much before the last loaded audit event.")
    delivery_window_days: int = Field(default=MAX_DELIVERY_WINDOW_DAYS, description="DAY window of delivery metrics (1-13).")
    chunk_rows: int = Field(default=50_000, description="Rows per warehouse write; bounds memory on huge objects.")
    sim_seed: int = 7
    sim_scale: int = 1

    def _validate(self) -> None:
        if self.region not in HOSTS:
            raise ConfigError(f"segment region {self.region!r} is not one of {sorted(HOSTS)}")
        if self.secrets not in ("hash", "drop"):
            raise ConfigError(f"segment secrets={self.secrets!r}: use 'hash' or 'drop'")
        if self.mode not in ("simulated", "live"):
            raise ConfigError(f"segment mode={self.mode!r}: use 'simulated' or 'live'")

    @contextlib.contextmanager
    def open_client(self, logger: logging.Logger | Any = None) -> Iterator[SegmentClient]:
        """A client for one step; in simulated mode without ``base_url`` the simulator lives as long as it."""
        self._validate()
        with contextlib.ExitStack() as stack:
            token = self.token
            if self.base_url:
                base_url = self.base_url
            elif self.mode == "simulated":
                base_url, token = self._start_simulator(stack), SIMULATOR_TOKEN
            else:
                base_url = HOSTS[self.region]
            if not token:
                raise ConfigError(f"no Segment API token for {base_url}: set {TOKEN_VARIABLE}")
            client = SegmentClient(
                base_url, token, token_variable=TOKEN_VARIABLE, page_size=self.page_size, timeout=self.timeout_seconds,
                max_attempts=self.max_attempts, backoff_base=self.backoff_base_seconds,
                max_rate_limit_wait=self.max_rate_limit_wait_seconds, logger=logger,
            )
            stack.callback(client.close)
            yield client

    def _start_simulator(self, stack: contextlib.ExitStack) -> str:
        from .simulator import SegmentSimulator, SimConfig, Workspace, WorkspaceSize

        sim = SegmentSimulator(
            Workspace(seed=self.sim_seed, size=WorkspaceSize().scaled(self.sim_scale)),
            SimConfig(token=SIMULATOR_TOKEN, home_region=self.region),
        ).start()
        stack.callback(sim.stop)
        return sim.urls[self.region]


def default_segment_resource() -> SegmentResource:
    """The resource for the current ``CDP_SOURCES``: the simulator, or the live API with the token's EnvVar."""
    if sources() is Sources.LIVE:
        return SegmentResource(mode="live", token=EnvVar(TOKEN_VARIABLE),
                               region=env_setting("CDP_SEGMENT_REGION", "us").lower())
    return SegmentResource(mode="simulated")
