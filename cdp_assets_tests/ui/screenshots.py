"""Browser check of the Dagster UI for the real code location: screenshots of the global asset graph, of a
partitioned asset's page and of the concurrency pools, taken with headless Chromium driven by Playwright.

    .venv/bin/python cdp_assets_tests/ui/screenshots.py OUT_DIR [--expect-groups segment,intercom,...]

It starts `dagster api grpc` for ``cdp_assets.definitions``, `dagster-webserver` on an ephemeral port and a
temporary instance made from the project's ``dagster.yaml`` (with the pool limits applied), opens the pages in
Debian's Chromium (``/usr/bin/chromium``, package ``chromium``; Playwright's own browser downloads are never
used), saves PNGs into OUT_DIR and checks what they show:

* ``asset-graph-groups.png``: the global asset graph, one box per group; every expected group must be in the
  webserver's GraphQL answer *and* drawn as a labelled box inside the visible graph canvas;
* ``asset-graph-expanded.png``: the same graph with every group expanded, on a page made tall enough for the
  whole graph at the UI's fit-to-width zoom (the graph must lie wholly inside the canvas);
* ``partitioned-asset.png``: the partitions view of a partitioned asset (a ``segment/usage_*`` table when
  there is one); every partition key from GraphQL must be listed on the page;
* ``concurrency-pools.png``: the instance's concurrency pools;

and that no screenshot is blank (decoded in the browser: enough distinct colours and non-background pixels).
Exit status 0 means all of that held; the problems found are printed otherwise, with the run time.

Needs: ``apt-get install chromium`` and the Python package ``playwright`` (no ``playwright install``). The
pytest test ``cdp_assets_tests/ui/test_browser.py`` runs the same check.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from cdp_assets_tests.ops.dagster_services import dagster_services  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
# As the machine's documentation prescribes for a closed network: no background connections, no GPU, no
# sandbox (we may be root).
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
#: The expanded graph's page grows to fit the graph; past this height it is reported as cut off.
MAX_PAGE_HEIGHT = 8000

ASSET_NODES = "{ assetNodes { assetKey { path } groupName isPartitioned isMaterializable } }"
PARTITIONS = """
query Partitions($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { partitionKeys partitionDefinition { type description } }
  }
}"""

#: The graph canvas: Dagster draws the asset graph as one SVG (group boxes and asset nodes are HTML inside
#: its foreignObjects), moved and scaled inside a clipping viewport two levels up.
GRAPH_SVG = "svg[class*=svgContainer]"

#: Geometry of the graph: the SVG's own (unscaled) size, where it is drawn, and the clipping viewport's box.
GRAPH_GEOMETRY_JS = """() => {
  const svg = document.querySelector('%s');
  if (!svg) return null;
  const r = svg.getBoundingClientRect(), b = svg.parentElement.parentElement.getBoundingClientRect();
  return {native: [+svg.getAttribute('width'), +svg.getAttribute('height')],
          drawn: [r.left, r.top, r.right, r.bottom], box: [b.left, b.top, b.right, b.bottom],
          nodes: svg.querySelectorAll('foreignObject').length};
}""" % GRAPH_SVG

#: Labels drawn on the graph canvas that lie inside its visible box (so the sidebar's tree, which lists the
#: same group names, does not count, nor does a label scrolled or clipped out of sight).
CANVAS_LABELS_JS = """() => {
  const svg = document.querySelector('%s');
  if (!svg) return [];
  const b = svg.parentElement.parentElement.getBoundingClientRect();
  return Array.from(svg.querySelectorAll('foreignObject *'))
    .filter(e => e.children.length === 0 && e.textContent.trim())
    .filter(e => { const r = e.getBoundingClientRect();
                   return r.width > 0 && r.height > 0 && r.left >= b.left - 1 && r.right <= b.right + 1
                          && r.top >= b.top - 1 && r.bottom <= b.bottom + 1; })
    .map(e => e.textContent.trim().toLowerCase());
}""" % GRAPH_SVG

#: Decodes a PNG in the browser and measures it on a sample of pixels: distinct colours and the share of
#: pixels that differ from the most common colour (the background).
PNG_STATS_JS = """async (src) => {
  const img = new Image(); img.src = src; await img.decode();
  const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
  const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  const counts = new Map(); let n = 0;
  for (let i = 0; i < d.length; i += 4 * 7) {
    const k = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2]; counts.set(k, (counts.get(k) || 0) + 1); n++;
  }
  const top = Math.max(...counts.values());
  return {width: img.width, height: img.height, colours: counts.size, ink: 1 - top / n};
}"""
#: Below these a screenshot counts as blank (a white page with a spinner has a handful of colours and next to
#: no ink; the real pages have hundreds of colours, and 2% ink for the sparsest, the pools table).
MIN_COLOURS, MIN_INK = 64, 0.005


@dataclass
class CheckResult:
    out_dir: Path
    asset_count: int = 0
    groups_api: list[str] = field(default_factory=list)  # groups the webserver's GraphQL reports
    groups_on_graph: list[str] = field(default_factory=list)  # expected groups drawn on the graph canvas
    external_assets: list[str] = field(default_factory=list)
    partitioned_asset: str | None = None
    partition_definition: str | None = None
    partition_keys: list[str] = field(default_factory=list)
    png_stats: dict[str, dict] = field(default_factory=dict)  # file name -> width, height, colours, ink
    seconds: dict[str, float] = field(default_factory=dict)  # step -> wall time
    problems: list[str] = field(default_factory=list)

    @property
    def screenshots(self) -> list[Path]:
        return sorted(self.out_dir.glob("*.png"))


def pick_partitioned_asset(nodes: list[dict]) -> list[str] | None:
    """A partitioned asset to show: a Segment usage table if there is one, else any partitioned table."""
    partitioned = [n for n in nodes if n["isPartitioned"] and n["isMaterializable"]]
    partitioned.sort(
        key=lambda n: (
            "usage" not in "/".join(n["assetKey"]["path"]),
            n["groupName"] != "segment",
            n["assetKey"]["path"],
        )
    )
    return partitioned[0]["assetKey"]["path"] if partitioned else None


def wait_for(page, probe, timeout_s: float):
    """Poll ``probe(page)`` until it returns an empty list (nothing missing); return what is still missing."""
    deadline = time.monotonic() + timeout_s
    missing = probe(page)
    while missing and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        missing = probe(page)
    return missing


def texts_missing(texts: Sequence[str]):
    return lambda page: [t for t in texts if t.lower() not in page.inner_text("body").lower()]


def groups_missing(groups: Sequence[str]):
    return lambda page: [g for g in groups if g.lower() not in set(page.evaluate(CANVAS_LABELS_JS))]


def graph_cut_off(page) -> list[str]:
    """Empty when the whole graph is drawn inside the canvas' visible box."""
    g = page.evaluate(GRAPH_GEOMETRY_JS)
    if not g:
        return ["no graph"]
    (left, top, right, bottom), (bl, bt, br, bb) = g["drawn"], g["box"]
    inside = left >= bl - 1 and top >= bt - 1 and right <= br + 1 and bottom <= bb + 1
    return [] if inside else [f"graph drawn at {g['drawn']} outside the canvas {g['box']}"]


def graph_collapsed(page, group_count: int) -> list[str]:
    """Empty once the URL says the groups are expanded and the canvas holds more than the group boxes."""
    nodes = (page.evaluate(GRAPH_GEOMETRY_JS) or {}).get("nodes", 0)
    return [] if "expanded=" in page.url and nodes > group_count else ["collapsed"]


def statuses_loading(page) -> list[str]:
    return ["statuses"] if "fetching statuses" in page.inner_text("body").lower() else []


#: Asset nodes drawn small (zoomed out) in the pale style of "no status yet"; external assets keep that style.
PALE_NODES_JS = """() => Array.from(document.querySelectorAll('[class*=minimalAssetNodeBox]'))
  .filter(e => (e.getAttribute('style') || '').includes('--minimal-bg: var(--color-background-light)'))
  .length"""


def node_statuses_loading(external_count: int):
    """Empty once no more asset nodes than the external ones are still drawn without their status."""
    return lambda page: ["node statuses"] if page.evaluate(PALE_NODES_JS) > external_count else []


def dismiss_welcome(page) -> None:
    """A fresh instance greets the first visitor with a newsletter dialog; skip it."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.first.click(timeout=5000)
    except Exception:  # noqa: BLE001 (no dialog this time)
        pass


def measure_png(page, path: Path) -> dict:
    src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    stats = page.evaluate(PNG_STATS_JS, src)
    stats["bytes"] = path.stat().st_size
    return stats


def take_screenshots(url: str, out: Path, groups: Sequence[str], result: CheckResult) -> None:
    from playwright.sync_api import sync_playwright

    problems = result.problems
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport=VIEWPORT)

        # 1. the global asset graph, one box per group (the UI's default for a graph this size)
        t = time.monotonic()
        page.goto(f"{url}/asset-groups", wait_until="networkidle")
        dismiss_welcome(page)
        missing = wait_for(page, groups_missing(groups), 30)
        wait_for(page, statuses_loading, 20)
        page.wait_for_timeout(1000)  # let edges finish drawing
        missing = groups_missing(groups)(page)
        result.groups_on_graph = [g for g in groups if g not in missing]
        if missing:
            problems.append(f"the asset graph does not show the groups {missing}")
        if cut := graph_cut_off(page):
            problems.append(f"asset-graph-groups.png: {cut[0]}")
        page.screenshot(path=str(out / "asset-graph-groups.png"))
        result.seconds["graph (groups)"] = time.monotonic() - t

        # 2. every group expanded (Alt+E; the URL keeps it), at the UI's fit-to-width zoom on a page made as
        # tall as the graph then is, so the whole graph is in the picture and its nodes stay readable
        t = time.monotonic()
        page.keyboard.press("Alt+e")
        if wait_for(page, lambda p: graph_collapsed(p, len(groups)), 20):
            problems.append("Alt+E did not expand the groups")
        page.wait_for_timeout(1000)
        height = VIEWPORT["height"]
        if g := page.evaluate(GRAPH_GEOMETRY_JS):
            box_w, box_h = g["box"][2] - g["box"][0], g["box"][3] - g["box"][1]
            scale = min(1.0, box_w / g["native"][0])  # the UI's fit-to-width zoom, at most 1
            height = max(height, int(height - box_h + g["native"][1] * scale + 80))
        page.set_viewport_size({"width": VIEWPORT["width"], "height": min(height, MAX_PAGE_HEIGHT)})
        page.reload(wait_until="networkidle")  # lays the graph out again for the new size
        wait_for(page, graph_cut_off, 20)
        wait_for(page, statuses_loading, 20)
        if wait_for(page, node_statuses_loading(len(result.external_assets)), 30):
            problems.append("asset-graph-expanded.png: asset nodes still drawn without their status")
        page.wait_for_timeout(1000)
        if cut := graph_cut_off(page):
            problems.append(f"asset-graph-expanded.png: {cut[0]} (graph needs a {height}px page)")
        if missing := groups_missing(groups)(page):
            problems.append(f"the expanded asset graph does not show the groups {missing}")
        page.screenshot(path=str(out / "asset-graph-expanded.png"))
        page.set_viewport_size(VIEWPORT)
        result.seconds["graph (expanded)"] = time.monotonic() - t

        # 3. a partitioned asset's partitions view, tall enough to list every partition
        t = time.monotonic()
        if result.partitioned_asset:
            path, keys = result.partitioned_asset, result.partition_keys
            page.set_viewport_size({"width": VIEWPORT["width"],
                                    "height": min(max(VIEWPORT["height"], 420 + 40 * len(keys)), 4000)})
            page.goto(f"{url}/assets/{path}?view=partitions", wait_until="networkidle")
            if missing := wait_for(page, texts_missing([path.split("/")[-1], *keys]), 30):
                problems.append(f"the partitions page of {path} does not list {missing[:5]}")
            page.wait_for_timeout(1000)
            page.screenshot(path=str(out / "partitioned-asset.png"))
            page.set_viewport_size(VIEWPORT)
        else:
            problems.append("the code location has no partitioned asset to show")
        result.seconds["partitioned asset"] = time.monotonic() - t

        # 4. the instance's concurrency pools, as `cdp_assets.deploy.pools` set them
        t = time.monotonic()
        page.goto(f"{url}/deployment/concurrency", wait_until="networkidle")
        if wait_for(page, texts_missing(["segment_api", "intercom_scroll"]), 30):
            problems.append("the concurrency page does not list the API pools")
        page.screenshot(path=str(out / "concurrency-pools.png"))
        result.seconds["pools"] = time.monotonic() - t

        # no blank pictures
        page.goto("about:blank")
        for png in sorted(out.glob("*.png")):
            stats = result.png_stats[png.name] = measure_png(page, png)
            if stats["colours"] < MIN_COLOURS or stats["ink"] < MIN_INK:
                problems.append(f"{png.name} looks blank: {stats}")
        browser.close()


def run_check(out: Path, groups: Sequence[str] = tuple(DEFAULT_GROUPS.split(","))) -> CheckResult:
    """Start the services, take and check the screenshots into ``out``; the result lists any problems."""
    import requests
    from dagster import DagsterInstance

    from cdp_assets.deploy.pools import apply_pool_limits

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    result = CheckResult(out)
    if not os.path.exists(CHROMIUM):
        result.problems.append(f"{CHROMIUM} not found: apt-get install chromium (or bash .ci/bootstrap)")
        return result

    def gql(url: str, query: str, **variables):
        answer = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=30)
        answer.raise_for_status()
        return answer.json()["data"]

    with tempfile.TemporaryDirectory(prefix="cdp-ui-") as tmp:
        root = Path(tmp)
        env = {"CDP_DATA_DIR": str(root / "data")}
        t = time.monotonic()
        with dagster_services(root, ["-m", "cdp_assets.definitions"], env=env) as services:
            with DagsterInstance.from_config(str(services.home)) as instance:
                apply_pool_limits(instance)
            result.seconds["services"] = time.monotonic() - t
            nodes = gql(services.url, ASSET_NODES)["assetNodes"]
            result.asset_count = len(nodes)
            result.groups_api = sorted({n["groupName"] for n in nodes})
            result.external_assets = sorted(
                "/".join(n["assetKey"]["path"]) for n in nodes if not n["isMaterializable"]
            )
            if absent := [g for g in groups if g not in result.groups_api]:
                result.problems.append(f"GraphQL reports no assets in the groups {absent}")
            if partitioned := pick_partitioned_asset(nodes):
                node = gql(services.url, PARTITIONS, path=partitioned)["assetNodeOrError"]
                result.partitioned_asset = "/".join(partitioned)
                result.partition_keys = node["partitionKeys"]
                result.partition_definition = node["partitionDefinition"]["description"]
            take_screenshots(services.url, out, groups, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for the PNG files (created if missing)")
    parser.add_argument(
        "--expect-groups", default=DEFAULT_GROUPS, help=f"comma-separated (default {DEFAULT_GROUPS})"
    )
    args = parser.parse_args(argv)
    groups = [g.strip() for g in args.expect_groups.split(",") if g.strip()]

    started = time.monotonic()
    r = run_check(args.out_dir, groups)
    print(f"{r.asset_count} assets; groups (GraphQL) {r.groups_api}; drawn on the graph {r.groups_on_graph}")
    print(f"external assets: {r.external_assets}")
    if r.partitioned_asset:
        keys = r.partition_keys
        span = f" {keys[0]} .. {keys[-1]}" if keys else ""
        print(f"partitioned {r.partitioned_asset}: {r.partition_definition!r}, {len(keys)} partitions{span}")
    for png in r.screenshots:
        s = r.png_stats.get(png.name, {})
        print(f"  {png}  {s.get('width')}x{s.get('height')}, {png.stat().st_size // 1024} KiB,"
              f" {s.get('colours')} colours, {100 * s.get('ink', 0):.1f}% ink")
    print("  " + ", ".join(f"{step} {secs:.1f}s" for step, secs in r.seconds.items()))
    for p in r.problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    print(f"{'FAILED' if r.problems else 'ok'}: done in {time.monotonic() - started:.1f}s")
    return 1 if r.problems else 0


if __name__ == "__main__":
    sys.exit(main())
