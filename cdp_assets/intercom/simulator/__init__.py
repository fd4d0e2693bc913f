"""A deterministic simulated Intercom workspace (API 2.16) on loopback, with the real API's traps."""

from .server import Fault, SimulatorServer, start_simulator
from .workspace import PART_CAP, Workspace, WorkspaceConfig, company_id, contact_id, conversation_id, part_id

__all__ = [
    "PART_CAP", "Fault", "SimulatorServer", "Workspace", "WorkspaceConfig", "company_id", "contact_id",
    "conversation_id", "part_id", "start_simulator",
]
