"""The blocking Braze contract check on each sync table (generated from ``CONTRACT_CHECKS``, a row each).

It fails (severity ERROR, blocking) when the table's columns are not exactly Braze's (names, types, NOT NULL),
or when a row of the newest batch has zero or several identifiers, or two rows of that batch share an
identifier (users) or are the same event twice (events).

Why only the newest batch: every batch has its own UPDATED_AT, so duplicates per identifier and UPDATED_AT can
only occur inside one batch, and each batch is checked right after the run that wrote it. That keeps the
check's cost independent of the table's (append-only, ever growing) size.
"""

from dataclasses import dataclass

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    asset_check,
)

from ..shared.warehouse import WarehouseResource
from . import contract
from .assets import EVENTS_SYNC, USERS_SYNC, latest_batch, table_of


@dataclass(frozen=True)
class ContractCheck:
    key: AssetKey
    #: Besides the identifier and UPDATED_AT, what makes two rows duplicates (events: the same PAYLOAD).
    duplicate_by: tuple[str, ...]
    what: str


CONTRACT_CHECKS = (
    ContractCheck(USERS_SYNC, (), "one row per user and UPDATED_AT"),
    ContractCheck(EVENTS_SYNC, ("PAYLOAD",), "no event twice in one batch"),
)


def identifier_of(row: pd.Series) -> tuple[str, ...]:
    """The identifier kinds a row sets (alias = both alias columns)."""
    kinds = [c for c in ("EXTERNAL_ID", "BRAZE_ID", "EMAIL", "PHONE") if _set(row.get(c))]
    alias = [_set(row.get("ALIAS_NAME")), _set(row.get("ALIAS_LABEL"))]
    if any(alias):
        kinds.append("ALIAS" if all(alias) else "INCOMPLETE_ALIAS")
    return tuple(kinds)


def _set(v: object) -> bool:
    return v is not None and not (isinstance(v, float) and pd.isna(v)) and str(v) != ""


def table_problems(wh: WarehouseResource, spec: ContractCheck) -> tuple[list[str], int]:
    """(problems, rows checked) for one sync table."""
    problems = contract.contract_violations(wh, table_of(spec.key))
    existing = {c.name for c in wh.columns(table_of(spec.key)) or []}
    if "UPDATED_AT" not in existing:
        return problems, 0
    wanted = [c for c in (*contract.ID_COLUMNS, "UPDATED_AT", *spec.duplicate_by, "PAYLOAD") if c in existing]
    batch = latest_batch(wh, spec.key, list(dict.fromkeys(wanted)))
    if batch.empty:
        return problems, 0
    kinds = batch.apply(identifier_of, axis=1)
    bad = kinds.map(lambda k: len(k) != 1 or k == ("INCOMPLETE_ALIAS",))
    if bad.any():
        examples = [", ".join(k) or "none" for k in kinds[bad].head(3)]
        problems.append(f"{int(bad.sum())} row(s) do not have exactly one identifier (e.g. {examples})")
    for col in ("UPDATED_AT", "PAYLOAD"):
        if col in batch and batch[col].isna().any():
            problems.append(f"{int(batch[col].isna().sum())} row(s) have a NULL {col}")
    key_cols = [c for c in (*contract.ID_COLUMNS, "UPDATED_AT", *spec.duplicate_by) if c in batch]
    dupes = batch.duplicated(subset=key_cols, keep=False)
    if dupes.any():
        problems.append(f"{int(dupes.sum())} row(s) share {' + '.join(key_cols)} ({spec.what})")
    return problems, len(batch)


def build_contract_check(spec: ContractCheck) -> AssetChecksDefinition:
    @asset_check(
        asset=spec.key,
        name="braze_contract",
        blocking=True,
        description=f"Braze CDI contract: exact columns and types, one identifier per row, {spec.what}.",
    )
    def _check(context: AssetCheckExecutionContext, warehouse: WarehouseResource) -> AssetCheckResult:
        contract.require_braze_readable(warehouse)
        problems, checked = table_problems(warehouse, spec)
        for p in problems:
            context.log.error(f"{spec.key.to_user_string()}: {p}")
        return AssetCheckResult(
            passed=not problems,
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "problems": MetadataValue.json(problems),
                "rows_checked": MetadataValue.int(checked),
                "table": MetadataValue.text(warehouse.fqn(table_of(spec.key))),
            },
        )

    return _check


contract_checks = [build_contract_check(spec) for spec in CONTRACT_CHECKS]
