"""Run the simulator in its own process: ``python -m cdp_assets.intercom.simulator --contacts 300000``.

Prints ``READY <url>`` once it listens (benchmarks read that line), then serves until killed.
"""

from __future__ import annotations

import argparse
import sys

from .server import SimulatorServer
from .workspace import Workspace, WorkspaceConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contacts", type=int, default=1000)
    p.add_argument("--companies", type=int, default=40)
    p.add_argument("--conversations", type=int, default=120)
    p.add_argument("--padding", type=int, default=0, help="bytes of custom attribute text per contact")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token", default="sim-token")
    args = p.parse_args(argv)
    cfg = WorkspaceConfig(seed=args.seed, contacts=args.contacts, companies=args.companies,
                          conversations=args.conversations, contact_padding=args.padding, token=args.token)
    server = SimulatorServer(Workspace(cfg), port=args.port)
    print(f"READY {server.url}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
