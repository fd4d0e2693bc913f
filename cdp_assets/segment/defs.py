"""Everything Dagster needs from the segment folder."""

from dagster import Definitions


def build_defs() -> Definitions:
    return Definitions()
