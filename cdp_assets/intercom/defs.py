"""Everything Dagster needs from the intercom folder."""

from dagster import Definitions


def build_defs() -> Definitions:
    return Definitions()
