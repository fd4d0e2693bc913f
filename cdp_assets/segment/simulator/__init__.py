"""A local stand-in for the Segment Public API: a deterministic workspace served over HTTP on loopback."""

from .server import FAULT_KINDS, FaultPlan, SegmentSimulator, SimConfig, SimStats
from .workspace import Workspace, WorkspaceSize, segment_id

__all__ = [
    "FAULT_KINDS", "FaultPlan", "SegmentSimulator", "SimConfig", "SimStats", "Workspace", "WorkspaceSize", "segment_id",
]
