"""The Intercom API resource: live (region host + bearer token from ``INTERCOM_ACCESS_TOKEN``) or simulated.

In ``CDP_SOURCES=simulated`` with no ``base_url``, each step that opens a client starts the bundled simulator
in-process on an ephemeral loopback port (same seed and size every time, so every step sees the same
workspace) with a dummy token, and stops it when the step is done. No credentials are needed.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from ..shared.env import ConfigError, Sources, env_setting, sources
from .client import REGION_HOSTS, IntercomClient
from .simulator import SimulatorServer, Workspace, WorkspaceConfig

SIMULATOR_TOKEN = "sim-token"


class IntercomResource(ConfigurableResource):
    region: str = Field(default="US", description="Workspace region: US, EU or AU (selects the API host).")
    base_url: str | None = Field(default=None, description="Override the API host (e.g. a running simulator).")
    access_token: str | None = Field(default=None, description="Bearer token; use EnvVar('INTERCOM_ACCESS_TOKEN').")
    simulated: bool = Field(default=False, description="Start the bundled simulator when base_url is not set.")
    sim_seed: int = Field(default=7, description="Simulator seed (simulated mode).")
    sim_contacts: int = Field(default=2_000, description="Simulated contacts.")
    sim_conversations: int = Field(default=200, description="Simulated conversations.")
    sim_companies: int = Field(default=60, description="Simulated companies.")
    timeout_seconds: float = Field(default=30.0, description="Per-request timeout.")
    max_attempts: int = Field(default=6, description="Attempts per request on 5xx, timeouts and broken bodies.")
    backoff_base_seconds: float = Field(default=0.5, description="Base of the jittered exponential backoff.")
    scroll_busy_wait_seconds: float = Field(default=60.0, description="Wait when another scroll is open.")

    @classmethod
    def from_env(cls) -> "IntercomResource":
        if sources() is Sources.LIVE:
            return cls(access_token=EnvVar("INTERCOM_ACCESS_TOKEN"), region=env_setting("CDP_INTERCOM_REGION", "US"))
        return cls(simulated=True)

    def host(self) -> str:
        if self.base_url:
            return self.base_url
        try:
            return REGION_HOSTS[self.region.upper()]
        except KeyError:
            raise ConfigError(f"intercom region {self.region!r} is unknown; use one of {sorted(REGION_HOSTS)}") from None

    @contextlib.contextmanager
    def client(self, logger: logging.Logger | None = None) -> Iterator[IntercomClient]:
        server: SimulatorServer | None = None
        if self.simulated and not self.base_url:
            cfg = WorkspaceConfig(seed=self.sim_seed, contacts=self.sim_contacts,
                                  conversations=self.sim_conversations, companies=self.sim_companies,
                                  token=SIMULATOR_TOKEN)
            server = SimulatorServer(Workspace(cfg)).start()
            base, token = server.url, SIMULATOR_TOKEN
        else:
            base = self.host()
            token = self.access_token or (SIMULATOR_TOKEN if self.simulated else "")
            if not token:
                raise ConfigError("INTERCOM_ACCESS_TOKEN is not set; it is required for the live Intercom API")
        client = IntercomClient(base, token, timeout=self.timeout_seconds, max_attempts=self.max_attempts,
                                backoff_base=self.backoff_base_seconds,
                                scroll_busy_wait=self.scroll_busy_wait_seconds, logger=logger)
        try:
            yield client
        finally:
            client.close()
            if server is not None:
                server.stop()
