"""The scripted browser check (``screenshots.py``) as a test: the real code location behind a real code server
and webserver, looked at by Debian's headless Chromium through Playwright.

One test on purpose: the check starts its own services and browser (about 30 s), and pytest-xdist would run a
shared module fixture once per worker. Set ``CDP_UI_SCREENSHOTS=DIR`` to keep the pictures.
"""

from __future__ import annotations

import os
from pathlib import Path

from .screenshots import CHROMIUM, DEFAULT_GROUPS, MIN_COLOURS, MIN_INK, VIEWPORT, run_check

GROUPS = DEFAULT_GROUPS.split(",")
PICTURES = [
    "asset-graph-expanded.png",
    "asset-graph-groups.png",
    "concurrency-pools.png",
    "partitioned-asset.png",
]


def test_screenshots_show_the_groups_and_a_monthly_partitioned_asset(tmp_path):
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: `bash .ci/bootstrap` installs Debian's chromium"
    out = Path(os.environ.get("CDP_UI_SCREENSHOTS") or tmp_path)
    result = run_check(out, GROUPS)

    assert result.problems == [], "\n".join(result.problems)
    # the four groups: in the webserver's answer and drawn, labelled, inside the visible graph canvas
    assert set(GROUPS) <= set(result.groups_api)
    assert result.groups_on_graph == GROUPS
    # the external assets the sources hang from
    assert {"segment/workspace", "intercom/workspace"} <= set(result.external_assets)
    # the partitioned page is a Segment usage table, monthly, with every partition listed
    assert result.partitioned_asset and result.partitioned_asset.startswith("segment/usage_")
    assert (result.partition_definition or "").startswith("Monthly")
    assert len(result.partition_keys) >= 12 and all(k.endswith("-01") for k in result.partition_keys)

    assert [p.name for p in result.screenshots] == PICTURES
    for png in result.screenshots:
        stats = result.png_stats[png.name]
        assert png.stat().st_size > 20_000, (png.name, stats)
        assert stats["width"] == VIEWPORT["width"], (png.name, stats)
        assert stats["height"] >= VIEWPORT["height"], (png.name, stats)
        assert stats["colours"] >= MIN_COLOURS and stats["ink"] >= MIN_INK, (png.name, stats)
    # the expanded graph's page grew to hold the whole graph
    assert result.png_stats["asset-graph-expanded.png"]["height"] > 2 * VIEWPORT["height"]
