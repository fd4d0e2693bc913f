"""Everything Dagster needs from the braze folder."""

from dagster import Definitions


def build_defs() -> Definitions:
    return Definitions()
