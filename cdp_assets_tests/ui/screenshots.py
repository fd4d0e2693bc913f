"""Browser check of the Dagster UI for the real code location: screenshots of the global asset graph, of a
partitioned asset's page and of the concurrency pools, taken with headless Chromium driven by Playwright.

    .venv/bin/python cdp_assets_tests/ui/screenshots.py OUT_DIR [--expect-groups segment,intercom,...]

It starts `dagster api grpc` for ``cdp_assets.definitions``, `dagster-webserver` on an ephemeral port and a
temporary instance made from the project's ``dagster.yaml`` (with the pool limits applied), opens the pages in
Debian's Chromium (``/usr/bin/chromium``, package ``chromium``; Playwright's own browser downloads are never
used), saves PNGs into OUT_DIR, and checks that the graph shows every expected asset group. Exit status 0
means every screenshot was taken and every expected group is on the graph; the run time is printed at the end.

Needs: ``apt-get install chromium`` and the Python package ``playwright`` (no ``playwright install``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from cdp_assets_tests.ops.dagster_services import dagster_services  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
# As the machine's documentation prescribes for a closed network: no background connections, no GPU, no
# sandbox (we may be root). Playwright adds --headless itself.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEFAULT_GROUPS = "segment,intercom,events,braze"
VIEWPORT = {"width": 1680, "height": 1050}

ASSET_NODES = "{ assetNodes { assetKey { path } groupName isPartitioned isMaterializable } }"


def pick_partitioned_asset(nodes: list[dict]) -> list[str] | None:
    """A partitioned asset to show: a Segment usage table if there is one, else any partitioned table."""
    partitioned = [n for n in nodes if n["isPartitioned"] and n["isMaterializable"]]
    partitioned.sort(
        key=lambda n: ("usage" not in "/".join(n["assetKey"]["path"]), n["groupName"] != "segment")
    )
    return partitioned[0]["assetKey"]["path"] if partitioned else None


#: Labels drawn on the graph canvas (group titles, asset names) are large; the sidebar's tree is not. Reading
#: them tells what the graph itself shows, not what the sidebar lists.
CANVAS_LABELS_JS = """() => Array.from(document.querySelectorAll('body *'))
  .filter(e => e.children.length === 0 && e.textContent.trim())
  .filter(e => parseFloat(getComputedStyle(e).fontSize) >= 18)
  .map(e => e.textContent.trim().toLowerCase())"""


def wait_for(page, probe, timeout_s: float):
    """Poll ``probe(page)`` until it returns an empty list (nothing missing); return what is still missing."""
    deadline = time.monotonic() + timeout_s
    missing = probe(page)
    while missing and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        missing = probe(page)
    return missing


def texts_missing(texts: list[str]):
    return lambda page: [t for t in texts if t.lower() not in page.inner_text("body").lower()]


def groups_missing(groups: list[str]):
    return lambda page: [g for g in groups if g.lower() not in set(page.evaluate(CANVAS_LABELS_JS))]


def dismiss_welcome(page) -> None:
    """A fresh instance greets the first visitor with a newsletter dialog; skip it."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.first.click(timeout=5000)
    except Exception:  # noqa: BLE001 (no dialog this time)
        pass


def take_screenshots(url: str, out: Path, groups: list[str], partitioned: list[str] | None) -> list[str]:
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport=VIEWPORT)

        # 1. the global asset graph, one box per group (the UI's default for a graph this size)
        page.goto(f"{url}/asset-groups", wait_until="networkidle")
        dismiss_welcome(page)
        missing = wait_for(page, groups_missing(groups), 30)
        wait_for(page, lambda p: ["statuses"] if "fetching statuses" in p.inner_text("body") else [], 20)
        page.wait_for_timeout(1000)  # let edges finish drawing
        page.screenshot(path=str(out / "asset-graph-groups.png"))
        if missing:
            problems.append(f"the asset graph does not show the groups {missing}")

        # 2. the same graph with every group expanded (Alt+E), re-laid out on a larger page
        page.keyboard.press("Alt+e")
        page.set_viewport_size({"width": 2560, "height": 1800})
        page.reload(wait_until="networkidle")
        page.wait_for_timeout(2000)
        page.screenshot(path=str(out / "asset-graph-expanded.png"))
        page.set_viewport_size(VIEWPORT)

        # 3. a partitioned asset's partitions view
        if partitioned:
            path = "/".join(partitioned)
            page.goto(f"{url}/assets/{path}?view=partitions", wait_until="networkidle")
            if wait_for(page, texts_missing([partitioned[-1], "partition"]), 30):
                problems.append(f"the partitions page of {path} did not render")
            page.wait_for_timeout(1000)
            page.screenshot(path=str(out / "partitioned-asset.png"), full_page=True)
        else:
            problems.append("the code location has no partitioned asset to show")

        # 4. the instance's concurrency pools, as `cdp_assets.deploy.pools` set them
        page.goto(f"{url}/deployment/concurrency", wait_until="networkidle")
        if wait_for(page, texts_missing(["segment_api", "intercom_scroll"]), 30):
            problems.append("the concurrency page does not list the API pools")
        page.screenshot(path=str(out / "concurrency-pools.png"), full_page=True)
        browser.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for the PNG files (created if missing)")
    parser.add_argument(
        "--expect-groups", default=DEFAULT_GROUPS, help=f"comma-separated (default {DEFAULT_GROUPS})"
    )
    args = parser.parse_args(argv)
    out: Path = args.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    groups = [g.strip() for g in args.expect_groups.split(",") if g.strip()]
    if not os.path.exists(CHROMIUM):
        print(f"{CHROMIUM} not found: apt-get install chromium", file=sys.stderr)
        return 2

    started = time.monotonic()
    import requests
    from dagster import DagsterInstance

    from cdp_assets.deploy.pools import apply_pool_limits

    with tempfile.TemporaryDirectory(prefix="cdp-ui-") as tmp:
        root = Path(tmp)
        env = {"CDP_DATA_DIR": str(root / "data")}
        with dagster_services(root, ["-m", "cdp_assets.definitions"], env=env) as services:
            with DagsterInstance.from_config(str(services.home)) as instance:
                apply_pool_limits(instance)
            nodes = requests.post(f"{services.url}/graphql", json={"query": ASSET_NODES}, timeout=30).json()
            nodes = nodes["data"]["assetNodes"]
            present = sorted({n["groupName"] for n in nodes})
            partitioned = pick_partitioned_asset(nodes)
            print(f"webserver {services.url}: {len(nodes)} assets in groups {present}")
            problems = take_screenshots(services.url, out, groups, partitioned)
    for png in sorted(out.glob("*.png")):
        print(f"  {png}  ({png.stat().st_size // 1024} KiB)")
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    print(f"done in {time.monotonic() - started:.1f}s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
