"""The environment switch for endpoints: CDP_SOURCES picks simulators or the live APIs, the region variables
pick the live host, and tokens stay EnvVars (names, never values) until a resource starts."""

from __future__ import annotations

import pytest
from dagster import EnvVar

from cdp_assets.intercom.resources import IntercomResource
from cdp_assets.segment.resources import default_segment_resource
from cdp_assets.shared.env import ConfigError


@pytest.fixture
def live(monkeypatch):
    monkeypatch.setenv("CDP_SOURCES", "live")
    monkeypatch.delenv("CDP_SEGMENT_REGION", raising=False)
    monkeypatch.delenv("CDP_INTERCOM_REGION", raising=False)
    return monkeypatch


def test_simulated_is_the_default(monkeypatch):
    monkeypatch.delenv("CDP_SOURCES", raising=False)
    assert default_segment_resource().mode == "simulated"
    assert IntercomResource.from_env().simulated is True


@pytest.mark.parametrize("region, host", [(None, "https://api.intercom.io"), ("EU", "https://api.eu.intercom.io"),
                                          ("au", "https://api.au.intercom.io")])
def test_intercom_region_picks_the_live_host(live, region, host):
    if region:
        live.setenv("CDP_INTERCOM_REGION", region)
    resource = IntercomResource.from_env()
    assert resource.host() == host and not resource.simulated
    assert resource.access_token == EnvVar("INTERCOM_ACCESS_TOKEN")  # the variable's name, not its value


@pytest.mark.parametrize("region, expected", [(None, "us"), ("EU", "eu")])
def test_segment_region_picks_the_live_host(live, region, expected):
    if region:
        live.setenv("CDP_SEGMENT_REGION", region)
    resource = default_segment_resource()
    assert (resource.mode, resource.region) == ("live", expected)
    assert resource.token == EnvVar("SEGMENT_API_TOKEN")


def test_unknown_regions_fail_naming_the_choices(live):
    live.setenv("CDP_INTERCOM_REGION", "mars")
    with pytest.raises(ConfigError, match="mars.*AU.*EU.*US"):
        IntercomResource.from_env().host()
    live.setenv("CDP_SEGMENT_REGION", "mars")
    with pytest.raises(ConfigError, match="mars.*eu.*us"):
        with default_segment_resource().open_client():
            pass
