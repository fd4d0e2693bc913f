"""The Pub/Sub resource: which subscription to drain, and clients for it.

* ``CDP_SOURCES=simulated`` (default): the Google Pub/Sub emulator on loopback. If ``emulator_host`` is empty
  the resource starts (or reuses) one recorded under the data folder, and creates the topic and subscription.
* ``CDP_SOURCES=live``: Google Cloud Pub/Sub with Application Default Credentials (a service account on the
  run's workload, or ``GOOGLE_APPLICATION_CREDENTIALS``); nothing is created, the subscription must exist.
"""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from ..shared.env import Sources, data_dir, sources
from . import emulator
from .loader import DrainSettings

DEFAULT_TOPIC = "segment-events"  # the Teradata quickstart maps Segment's `*` to projects/<P>/topics/segment-events
DEFAULT_SUBSCRIPTION = "segment-events-cdp"


class PubSubResource(ConfigurableResource):
    """Segment's Pub/Sub topic and the pull subscription this platform drains."""

    project: str = Field(default="cdp-local", description="GCP project of the topic and subscription.")
    topic: str = Field(default=DEFAULT_TOPIC, description="Topic Segment publishes to (short name).")
    subscription: str = Field(default=DEFAULT_SUBSCRIPTION, description="Pull subscription (short name).")
    simulated: bool = Field(default=True, description="True: the local emulator; False: Google Cloud with ADC.")
    emulator_host: str = Field(default="", description="host:port of a running emulator; empty = start/reuse one.")
    ack_deadline_seconds: int = Field(default=60, description="Ack deadline of a subscription created here.")

    @classmethod
    def from_env(cls) -> PubSubResource:
        """Simulated or live per ``CDP_SOURCES``; live names come from EnvVars so they stay out of code."""
        if sources() is Sources.LIVE:
            from dagster import EnvVar

            return cls(project=EnvVar("CDP_PUBSUB_PROJECT"), topic=EnvVar("CDP_PUBSUB_TOPIC"),
                       subscription=EnvVar("CDP_PUBSUB_SUBSCRIPTION"), simulated=False)
        return cls()

    # ------------------------------------------------------------------------------------------ endpoints

    def address(self) -> str | None:
        """The emulator's host:port (started if needed) in simulated mode; None for Google Cloud."""
        if not self.simulated:
            return None
        if self.emulator_host:
            return self.emulator_host
        return emulator.ensure(data_dir() / "pubsub", project=self.project).address

    def ensure_exists(self) -> tuple[str, str]:
        """Topic and subscription paths; in simulated mode both are created if missing."""
        address = self.address()
        if self.simulated:
            return emulator.ensure_topic_and_subscription(address, self.project, self.topic, self.subscription,
                                                          self.ack_deadline_seconds)
        return f"projects/{self.project}/topics/{self.topic}", self.subscription_path

    @property
    def subscription_path(self) -> str:
        return f"projects/{self.project}/subscriptions/{self.subscription}"

    @property
    def topic_path(self) -> str:
        return f"projects/{self.project}/topics/{self.topic}"

    def subscriber(self):
        return emulator.subscriber_client(self.address())

    def publisher(self):
        return emulator.publisher_client(self.address())

    def drain_settings(self, **overrides) -> DrainSettings:
        # Live Pub/Sub may answer an immediate pull with nothing while messages exist; long-poll there.
        base = {"return_immediately": self.simulated, "max_empty_pulls": 1 if self.simulated else 2}
        return DrainSettings(**{**base, **overrides})
