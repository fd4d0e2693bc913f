"""The deployment files agree with each other and with the code: the same limits in the local instance, the
production instance and the Helm values; a Dockerfile that copies what exists and pins the Dagster release we
run; every secret the resources read is documented and mapped."""

import ast
import importlib.util
import re
import shutil

import dagster_postgres
import yaml
from dagster import DagsterInstance

from cdp_assets.deploy.pools import POOL_LIMITS
from cdp_assets.shared.env import project_root

ROOT = project_root()
DEPLOY = ROOT / "cdp_assets" / "deploy"


def _yaml(path):
    return yaml.safe_load(path.read_text())


def _camel(config: dict) -> dict:
    """dagster.yaml's snake_case concurrency block in the Helm chart's camelCase spelling."""
    pools, runs = config.get("pools", {}), config.get("runs", {})
    return {
        "enabled": True,
        "pools": {
            "defaultLimit": pools.get("default_limit"),
            "granularity": pools.get("granularity"),
        },
        "runs": {
            "maxConcurrentRuns": runs.get("max_concurrent_runs"),
            "tagConcurrencyLimits": runs.get("tag_concurrency_limits"),
        },
    }


def test_helm_concurrency_equals_production_instance():
    prod = _yaml(DEPLOY / "dagster.prod.yaml")
    helm = _yaml(DEPLOY / "helm-values.yaml")
    assert helm["concurrency"] == _camel(prod["concurrency"])
    retries = helm["dagsterDaemon"]["runRetries"]
    assert (retries["maxRetries"], retries["retryOnAssetOrOpFailure"]) == (
        prod["run_retries"]["max_retries"],
        prod["run_retries"]["retry_on_asset_or_op_failure"],
    )
    assert helm["postgresql"]["postgresqlScheme"] == prod["storage"]["postgres"]["postgres_db"]["scheme"]


def test_local_and_production_share_pool_semantics_and_the_duckdb_rule():
    local, prod = _yaml(ROOT / "dagster.yaml"), _yaml(DEPLOY / "dagster.prod.yaml")
    assert local["concurrency"]["pools"] == prod["concurrency"]["pools"]
    duckdb_rule = {"key": "cdp/warehouse", "value": "duckdb", "limit": 1}
    assert duckdb_rule in local["concurrency"]["runs"]["tag_concurrency_limits"]
    assert duckdb_rule in prod["concurrency"]["runs"]["tag_concurrency_limits"]
    # locally, the one DuckDB writer also means one run of the location at a time, whoever launched it
    assert {"key": "dagster/code_location", "value": "cdp_assets", "limit": 1} in (
        local["concurrency"]["runs"]["tag_concurrency_limits"]
    )


def test_local_instance_loads_with_the_queue_and_limits(tmp_path):
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1
        assert config.run_queue_config.max_concurrent_runs == 4


def test_helm_user_deployment_serves_the_code_location_and_runs_get_its_config():
    helm = _yaml(DEPLOY / "helm-values.yaml")
    (deployment,) = helm["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    assert args[0] == "-m" and importlib.util.find_spec(args[1]) is not None
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    assert helm["runLauncher"]["type"] == "K8sRunLauncher"
    assert helm["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"


def test_dockerfile_copies_existing_paths_and_pins_our_dagster_release():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    sources = [
        src
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for src in line.split()[1:-1]
        if not src.startswith("--")
    ]
    assert sources, "no COPY in the Dockerfile"
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
        assert f"!{src}" in ignore or f"!{src.rstrip('/')}/" in ignore, (
            f"{src} is excluded from the build context"
        )
    # dagster-k8s is not a project dependency; its pin must follow the installed Dagster libraries
    (pin,) = re.findall(r"dagster-k8s==([0-9.]+)", dockerfile)
    assert pin == dagster_postgres.__version__


def _env_names_in_code() -> set[str]:
    """Variable names the code reads through EnvVar: literal EnvVar("X") calls, and the values of the
    warehouse modules' ENV tables."""
    names: set[str] = set()
    for path in (ROOT / "cdp_assets").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "EnvVar"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(node.args[0].value)
            if (
                isinstance(node, ast.Assign)
                and any(getattr(t, "id", None) == "ENV" for t in node.targets)
                and isinstance(node.value, ast.Dict)
            ):
                names.update(v.value for v in node.value.values if isinstance(v, ast.Constant))
    return names


def test_every_variable_the_resources_read_is_documented():
    names = _env_names_in_code()
    assert {"INTERCOM_ACCESS_TOKEN", "SNOWFLAKE_PASSWORD"} <= names  # the scan itself works
    deploy_md = (DEPLOY / "DEPLOY.md").read_text()
    missing = sorted(n for n in names if n not in deploy_md)
    assert not missing, f"variables read by the code but not in DEPLOY.md's secrets table: {missing}"


def test_pool_table_covers_exactly_the_pools_the_assets_declare():
    from cdp_assets.definitions import defs

    declared = {pool for node in defs.resolve_asset_graph().asset_nodes for pool in node.pools or ()}
    assert declared, "no asset of the code location declares a pool"
    assert declared == set(POOL_LIMITS)


def test_documented_pool_commands_match_the_pool_table():
    text = (DEPLOY / "DEPLOY.md").read_text()
    (loop,) = re.findall(r"for pool in ([a-z_=0-9 ]+); do", text)
    assert dict((p.split("=")[0], int(p.split("=")[1])) for p in loop.split()) == dict(POOL_LIMITS)
