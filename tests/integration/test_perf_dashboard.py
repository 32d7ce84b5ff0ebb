"""The dashboard as a person sees it: a site generated from a small real history, opened in headless Chromium.

The history: two real `sdcl perf run --quick` runs (silu and softmax at their smallest SD shapes) on the default
OpenCL device, the second with a planted slowdown in silu_naive (perf/planted.py), and a ladder JSON beside the
history file. Chromium renders the device page: the DOM after scripts must hold the charts with their points
(roofline, ours/torch, history) and the regression, highlighted; the screenshot is kept as an artifact
(in the test's tmp folder, and in $SDCL_ARTIFACTS when set).

Chromium is a system package (`apt-get install chromium` on Debian); without it the browser tests skip.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).exists()), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found: apt-get install chromium")
WINDOW = (1300, 2400)


def _has_device() -> bool:
    try:
        from sdcl.opencl_impl.devices import all_devices
        return bool(all_devices())
    except ImportError:
        return False


pytestmark = pytest.mark.skipif(not _has_device(), reason="no OpenCL device (install pocl-opencl-icd)")

# The shape `sdcl ladder` writes (perf/ladder.py): the device as "platform / device", cumulative rows.
LADDER_ROWS = [{"row": "naive", "text_encoder_ms": 410.0, "unet_ms": 9100.0, "vae_ms": 30100.0},
               {"row": "+ tiled GEMM", "text_encoder_ms": 120.0, "unet_ms": 2400.0, "vae_ms": 8800.0}]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from sdcl.perf.cli import run
    from sdcl.perf.planted import planted_overlay
    from sdcl.cli import main

    root = tmp_path_factory.mktemp("dashboard")
    db = root / "perf-history.sqlite"
    assert run(str(db), quick=True) == 0
    overlay = planted_overlay(root / "overlay", "silu", delay=48)
    assert run(str(db), quick=True, extra=["--kernel-overlay", str(overlay)]) == 0
    from sdcl.perf.history import History
    with History(db) as h:
        platform_device = " / ".join(h.devices()[0].split(" / ")[:2])
    (root / "ladder-tiny-sd2-64-cpu.json").write_text(json.dumps(
        {"device": platform_device, "model": "tiny-sd2", "size": 64, "rows": LADDER_ROWS}))
    (root / "ladder-other-device.json").write_text(json.dumps(
        {"device": "Some Platform / some GPU", "model": "tiny-sd2", "size": 64, "rows": LADDER_ROWS}))
    out = root / "site"
    assert main(["dashboard", "--db", str(db), "--out", str(out)]) == 0
    pages = sorted(out.glob("device-*.html"))
    assert len(pages) == 1, pages
    return {"db": db, "out": out, "page": pages[0]}


def _chromium(*args, tmp: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'chromium-profile'}", f"--window-size={WINDOW[0]},{WINDOW[1]}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def test_site_is_self_contained(site):
    for page in site["out"].glob("*.html"):
        text = page.read_text()
        # nothing to fetch: no external scripts, styles, images or fonts (the SVG namespace URI is not a fetch)
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), page.name
        assert "<link" not in text and "@import" not in text and "url(" not in text, page.name
    index = (site["out"] / "index.html").read_text()
    assert site["page"].name in index and "Ladder: ladder-tiny-sd2-64-cpu.json" in index
    page = site["page"].read_text()  # a device page shows its own ladders only
    assert "Ladder: ladder-tiny-sd2-64-cpu.json" in page and "ladder-other-device" not in page
    assert "+ tiled GEMM" in page


@needs_chromium
def test_charts_render_in_chromium(site, tmp_path):
    res = _chromium("--dump-dom", site["page"].resolve().as_uri(), tmp=tmp_path)
    dom = res.stdout
    assert "<body" in dom, res.stderr[-2000:]
    m = re.search(r'data-rendered="([^"]*)"', dom)
    assert m, "the page script did not run (no data-rendered summary on <body>)"
    drawn = json.loads(html.unescape(m.group(1)))

    from sdcl.perf.history import History
    with History(site["db"]) as h:
        latest = h.results(h.runs()[-1].id)
    ops = [r for r in latest.values() if r.extra_info.get("intensity")]
    with_torch = [r for r in latest.values() if r.extra_info.get("ratio_vs_torch")]
    assert len(ops) == len(latest) >= 2  # every quick benchmark is an op with a roofline point
    assert drawn["roofline"] == {"charts": 1, "points": len(ops)}
    assert drawn["history"] == {"charts": len(latest), "points": 2 * len(latest)}  # two runs each
    if with_torch:
        assert drawn["ratio"] == {"charts": 1, "points": len(with_torch)}
    # the planted regression is highlighted: listed in the box, its table row and its history point marked; and
    # the page flags exactly what `sdcl perf check` flags (softmax ran beside it, unchanged)
    from sdcl.perf import regress
    with History(site["db"]) as h:
        flagged = [f.name.split("::")[-1] for f in regress.check(h) if f.verdict == "regression"]
    assert any(name.startswith("test_op[silu-naive-") for name in flagged)
    box = re.search(r'<div class="box bad" id="regressions">(.*?)</div>', dom, re.S)
    assert box and all(name in html.unescape(box.group(1)) for name in flagged)
    assert re.search(r'<tr class="regression"><td title="[^"]*silu', dom)
    assert dom.count('class="pt regression"') == len(flagged)


@needs_chromium
def test_screenshot(site, tmp_path):
    from PIL import Image

    shot = tmp_path / "dashboard.png"
    res = _chromium(f"--screenshot={shot}", site["page"].resolve().as_uri(), tmp=tmp_path)
    assert shot.exists(), res.stderr[-2000:]
    if os.environ.get("SDCL_ARTIFACTS"):
        dest = Path(os.environ["SDCL_ARTIFACTS"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest / "perf-dashboard.png")
    img = Image.open(shot).convert("RGB")
    assert img.size == WINDOW
    colors = img.getcolors(maxcolors=1 << 20)
    assert len(colors) > 50, "the screenshot is (nearly) blank"
    counts = {c: n for n, c in colors}
    # the regression box background (#fde2e2) is visible
    assert counts.get((0xfd, 0xe2, 0xe2), 0) > 1000
