"""Misconfiguration fails fast and says what to set, never echoing a secret.

Definitions must still load without any credentials (the failure belongs to resource start), and network
failures are provoked only against closed loopback ports.
"""

from __future__ import annotations

import socket
import time

import pytest
from dagster import DagsterInvalidConfigError, build_resources
from dagster_snowflake import SnowflakeResource

from cdp_assets.shared.env import ConfigError
from cdp_assets.shared.resources import shared_resources
from cdp_assets.shared.warehouse import TableRef, WarehouseError
from cdp_assets.shared.warehouse import bigquery as bq_module
from cdp_assets.shared.warehouse import snowflake as sf_module
from cdp_assets.shared.warehouse import teradata as td_module
from cdp_assets.shared.warehouse.bigquery import BigQueryWarehouse
from cdp_assets.shared.warehouse.snowflake import SnowflakeWarehouse
from cdp_assets.shared.warehouse.teradata import TeradataWarehouse

SECRET = "hunter2-do-not-print"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections are refused


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path):
    for module in (sf_module, bq_module, td_module):
        for var in module.ENV.values():
            monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no user ADC file
    # Never probe the GCE metadata server (a link-local address): google-auth reads NO_GCE_CHECK at import.
    monkeypatch.setattr("google.auth.compute_engine._metadata._NO_GCE_CHECK", True)
    monkeypatch.setattr("google.auth._default._get_gce_credentials", lambda *a, **k: (None, None))
    return monkeypatch


def start(wh) -> None:
    with build_resources({"warehouse": wh}):
        pass


def test_unknown_warehouse_names_the_variable_and_the_choices(clean_env):
    clean_env.setenv("CDP_WAREHOUSE", "oracle")
    with pytest.raises(ConfigError, match=r"CDP_WAREHOUSE='oracle'.*duckdb, snowflake, bigquery, teradata"):
        shared_resources()


@pytest.mark.parametrize(
    "which, present, missing",
    [
        ("snowflake", {"SNOWFLAKE_USER": "cdp", "SNOWFLAKE_DATABASE": "CDP", "SNOWFLAKE_PASSWORD": SECRET}, "SNOWFLAKE_ACCOUNT"),
        ("snowflake", {"SNOWFLAKE_ACCOUNT": "acme", "SNOWFLAKE_USER": "cdp", "SNOWFLAKE_DATABASE": "CDP"}, "SNOWFLAKE_PASSWORD"),
        ("bigquery", {}, "BIGQUERY_PROJECT"),
        ("teradata", {"TERADATA_HOST": "td", "TERADATA_USER": "cdp", "TERADATA_DATABASE": "cdp"}, "TERADATA_PASSWORD"),
        ("teradata", {"TERADATA_USER": "cdp", "TERADATA_DATABASE": "cdp", "TERADATA_PASSWORD": SECRET}, "TERADATA_HOST"),
    ],
)
def test_missing_setting_fails_at_resource_start_naming_it(clean_env, which, present, missing):
    clean_env.setenv("CDP_WAREHOUSE", which)
    for var, value in present.items():
        clean_env.setenv(var, value)
    resources = shared_resources()  # loading definitions needs no credentials
    with pytest.raises(DagsterInvalidConfigError) as err:
        start(resources["warehouse"])
    assert f'"{missing}" which is not set' in str(err.value)
    assert SECRET not in str(err.value)


def test_bigquery_without_any_credentials_fails_at_start_naming_what_to_set(clean_env):
    clean_env.setenv("CDP_WAREHOUSE", "bigquery")
    clean_env.setenv("BIGQUERY_PROJECT", "acme-cdp")
    with pytest.raises(Exception) as err:
        start(shared_resources()["warehouse"])
    chain, exc = [], err.value
    while exc is not None:  # Dagster wraps the resource's own error
        chain.append(str(exc))
        exc = exc.__cause__ or getattr(exc, "user_exception", None)
    message = "\n".join(chain)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message and "BIGQUERY_CREDENTIALS_B64" in message


def test_snowflake_uses_key_pair_auth_when_a_key_is_configured(clean_env):
    clean_env.setenv("SNOWFLAKE_PRIVATE_KEY_PATH", "/keys/cdp.p8")
    clean_env.setenv("SNOWFLAKE_PRIVATE_KEY_PASSWORD", SECRET)
    wh = SnowflakeWarehouse.from_env()
    assert wh.snowflake.password is None
    assert wh.snowflake.private_key_path is not None and wh.snowflake.private_key_password is not None
    assert wh.snowflake.paramstyle == "qmark"


def test_teradata_encrypts_by_default_and_can_be_told_not_to(clean_env):
    assert TeradataWarehouse.from_env().encryptdata is True
    clean_env.setenv("TERADATA_ENCRYPTDATA", "false")
    clean_env.setenv("TERADATA_LOGMECH", "LDAP")
    wh = TeradataWarehouse.from_env()
    assert (wh.encryptdata, wh.logmech, wh.tmode) == (False, "LDAP", "ANSI")


def test_unreachable_snowflake_fails_fast_without_the_password():
    wh = SnowflakeWarehouse(
        snowflake=SnowflakeResource(
            account="cdp-unreachable", user="cdp", password=SECRET, database="CDP", paramstyle="qmark",
            login_timeout=5, network_timeout=5,
            # keep the attempt on loopback: a closed local port instead of Snowflake's hosts
            additional_snowflake_connection_args={"host": "127.0.0.1", "port": closed_port(), "protocol": "http"},
        ),
        database="CDP",
    )
    started = time.monotonic()
    with pytest.raises(WarehouseError) as err:
        wh.row_count(TableRef("segment", "sources"))
    assert time.monotonic() - started < 30
    assert "SNOWFLAKE_ACCOUNT" in str(err.value) and "'cdp-unreachable'" in str(err.value)
    assert SECRET not in str(err.value)


def test_snowflake_refuses_client_side_parameter_binding():
    wh = SnowflakeWarehouse(snowflake=SnowflakeResource(account="a", user="u", password=SECRET), database="CDP")
    with pytest.raises(ConfigError, match="paramstyle='qmark'"):
        wh.row_count(TableRef("segment", "sources"))


def test_unreachable_bigquery_endpoint_fails_fast_naming_the_setting():
    endpoint = f"http://127.0.0.1:{closed_port()}"
    wh = BigQueryWarehouse(project="acme-cdp", api_endpoint=endpoint, timeout_seconds=3)
    started = time.monotonic()
    with pytest.raises(WarehouseError) as err:
        wh.columns(TableRef("segment", "sources"))
    assert time.monotonic() - started < 30
    assert "BIGQUERY_API_ENDPOINT" in str(err.value) and endpoint in str(err.value)
