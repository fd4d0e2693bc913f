"""Everything Dagster needs from the events folder."""

from dagster import Definitions


def build_defs() -> Definitions:
    return Definitions()
