"""Run the Segment simulator in its own process (benchmarks, manual exploration).

    python -m cdp_assets.segment.simulator --scale 10 --token sim-token

Prints one JSON line with the base URLs, then serves until stdin closes or the process is terminated.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from .server import SegmentSimulator, SimConfig
from .workspace import Workspace, WorkspaceSize


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scale", type=int, default=1, help="multiply sources, catalogs and users by this")
    p.add_argument("--sources", type=int, help="number of sources (overrides --scale for sources)")
    p.add_argument("--token", default="sim-token")
    p.add_argument("--region", choices=("us", "eu"), default="us")
    p.add_argument("--rate-limit", type=int, default=1_000_000)
    p.add_argument("--rate-window", type=float, default=60.0)
    p.add_argument("--page-cache", type=int, default=0, help="pages kept built (0 = off)")
    args = p.parse_args(argv)
    size = WorkspaceSize().scaled(args.scale)
    if args.sources:
        size = type(size)(**{**size.__dict__, "sources": args.sources})
    sim = SegmentSimulator(
        Workspace(seed=args.seed, size=size),
        SimConfig(token=args.token, home_region=args.region, rate_limit=args.rate_limit,
                  rate_window_seconds=args.rate_window, page_cache=args.page_cache),
    ).start()
    print(orjson.dumps({"urls": sim.urls, "url": sim.url}).decode(), flush=True)
    try:
        sys.stdin.read()  # serve until the parent closes our stdin (or kills us)
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
