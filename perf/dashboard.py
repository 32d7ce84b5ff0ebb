"""A static dashboard of the benchmark history: one HTML page per device plus an index, all self-contained.

Charts are inline SVG drawn by perf/svg.py; the only script is a few lines written here (sortable tables, and a
`data-rendered` summary of what was drawn). Nothing is fetched, so the site works offline and from file://.

Per device: the latest regressions (the same rule as `sdcl perf check`), each benchmark's newest result (kernel and wall
medians, GFLOP/s, GB/s, % of the roofline, torch baseline and ratio, peak memory, change against the previous
run), a roofline chart under the measured peak, the ours / torch ratios, each benchmark's history over commits,
and the ladder table when a ladder JSON is found (`ladder*.json` beside the history file, or --ladder).
Several history files (e.g. brought back from several machines, `sdcl report merge`) are merged into one first;
with two devices or more the index shows each benchmark's newest result on every device side by side.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from html import escape
from pathlib import Path

import numpy as np

from sdcl.errors import BadInput
from sdcl.perf import regress, svg
from sdcl.perf.history import History, Result

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
th{background:#f4f4f4;cursor:pointer;position:sticky;top:0}td:first-child,th:first-child{text-align:left}
tr.regression td{background:#fde2e2}tr.improvement td{background:#e2f5e2}
.box{padding:8px 12px;border-radius:4px;margin:8px 0}.bad{background:#fde2e2;border:1px solid #e99}
.good{background:#e8f5e8;border:1px solid #9c9}.muted{color:#777}
.grid-charts{display:flex;flex-wrap:wrap;gap:8px}
svg.chart{background:#fff;border:1px solid #ddd}svg .plot{fill:#fcfcfc;stroke:#ccc}
svg .grid{stroke:#eee}svg .ct{font-size:13px;text-anchor:middle;font-weight:600}
svg .xt{font-size:10px;text-anchor:middle;fill:#555}svg .yt{font-size:10px;text-anchor:end;fill:#555}
svg .al{font-size:11px;text-anchor:middle;fill:#333}svg .rl{font-size:10px;fill:#a33}
svg .line{fill:none;stroke:#36c;stroke-width:1.5}svg .iqr{stroke:#9ab;stroke-width:3;opacity:.6}
svg .pt{fill:#36c}svg .pt.regression{fill:#d22}svg .pt.improvement{fill:#2a2}
svg .roof{fill:none;stroke:#a33;stroke-width:2}svg .bar.slower{fill:#e88}svg .bar.faster{fill:#6b6}
svg .one{stroke:#333;stroke-dasharray:3 3}
"""

SCRIPT = """
(function(){
  // Sortable tables: click a header to sort by that column (numbers by value).
  document.querySelectorAll('table.sortable th').forEach(function(th, i){
    th.addEventListener('click', function(){
      var body = th.closest('table').tBodies[0], rows = Array.from(body.rows), dir = th.dataset.dir === 'a' ? -1 : 1;
      th.dataset.dir = dir === 1 ? 'a' : 'd';
      rows.sort(function(a, b){
        var x = a.cells[i].dataset.v || a.cells[i].textContent, y = b.cells[i].dataset.v || b.cells[i].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        return dir * (isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny);
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
  // What was drawn, for people and tests: charts by kind with their point counts.
  var summary = {};
  document.querySelectorAll('svg.chart').forEach(function(s){
    var k = s.dataset.kind; summary[k] = summary[k] || {charts: 0, points: 0};
    summary[k].charts += 1; summary[k].points += s.querySelectorAll('.pt, .bar').length;
  });
  document.body.dataset.rendered = JSON.stringify(summary);
})();
"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}<script>{SCRIPT}</script></body></html>")


def _slug(device: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")[:80] or "device"


def _ms(s) -> str:
    return "" if s is None else f"{s * 1e3:.4g}"


def _num(v, fmt="{:.3g}") -> str:
    return "" if v is None else fmt.format(v)


def _cell(text: str, value=None) -> str:
    v = "" if value is None else f' data-v="{value}"'
    return f"<td{v}>{text}</td>"


def _label(res: Result) -> str:
    e = res.extra_info
    if e.get("kind") == "op":
        return f"{e.get('op')}/{e.get('variant')} {e.get('case', '')}"
    return res.short_name


def _bytes(n) -> str:
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.4g} {unit}" if unit != "B" else f"{n} B"
        n /= 1024


def device_page(history: History, device: str, ladders: list, threshold: float, alpha: float) -> tuple:
    """(html, summary dict) for one device."""
    runs = history.runs(device)
    latest = runs[-1]
    by_run = [(run, history.results(run.id)) for run in runs]     # every run's results, read once
    results = newest(by_run)
    findings = {f.name: f for f in regress.check(history, device, threshold, alpha)}
    peak = latest.peak or next((r.peak for r in reversed(runs) if r.peak), None)
    parts = [f"<p><a href='index.html'>all devices</a></p><h1>{escape(device)}</h1>",
             f"<p>{len(runs)} run(s); latest {escape(latest.label)} on {escape(latest.date)}"
             + (f"; measured peak {peak['gflops']:.4g} GFLOP/s (FMA kernel), {peak['gbps']:.4g} GB/s (copy kernel)"
                if peak else "; no measured peak recorded") + "</p>"]

    env = latest.environment
    load, cpus = max((env.get("loadavg_start") or [0])[:1] + (env.get("loadavg_end") or [0])[:1]), env.get("cpu_count")
    if cpus and load > cpus:
        parts.append(f"<div class='box bad' id='load'>The machine was loaded during the latest run (1-minute load "
                     f"average up to {load:.1f} on {cpus} CPUs): host-side timings, the torch CPU baseline and a CPU "
                     "device's kernel times are noisier than usual.</div>")

    # 1. the latest regressions
    bad = [f for f in findings.values() if f.verdict == "regression"]
    good = [f for f in findings.values() if f.verdict == "improvement"]
    if bad:
        parts.append("<div class='box bad' id='regressions'><b>Regressions in the latest run</b><ul>"
                     + "".join(f"<li>{escape(f.line())}</li>" for f in bad) + "</ul></div>")
    else:
        parts.append("<div class='box good' id='regressions'><b>No regression in the latest run</b> "
                     f"(rule: median slower by &gt; max({threshold:.0%}, run-to-run noise) and Mann-Whitney "
                     f"p &lt; {alpha}).</div>")
    if good:
        parts.append("<div class='box good'><b>Improvements</b><ul>"
                     + "".join(f"<li>{escape(f.line())}</li>" for f in good) + "</ul></div>")

    # 2. the latest run
    rows = []
    kinds = {"e2e": 0, "layer": 1, "op": 2}    # the pipeline first, then its layers, then the ops
    for name, r in sorted(results.items(), key=lambda kv: (kinds.get(kv[1].extra_info.get("kind"), 3), kv[0])):
        e, f = r.extra_info, findings.get(name)
        cls = f.verdict if f and f.verdict in ("regression", "improvement") else ""
        change = "" if not f or f.verdict == "new" else f"{f.change:+.1%}"
        rows.append(f"<tr class='{cls}'><td title='{escape(name)}'>{escape(_label(r))}</td>"
                    + _cell(escape(str(e.get("kind", ""))))
                    + _cell(_ms(e.get("kernel_median_s")), e.get("kernel_median_s"))
                    + _cell(_ms(r.median), r.median)
                    + _cell(_num(e.get("gflops")), e.get("gflops")) + _cell(_num(e.get("gbps")), e.get("gbps"))
                    + _cell(_num(e.get("pct_roofline"), "{:.1f}%"), e.get("pct_roofline"))
                    + _cell(_ms(e.get("torch_median_s")), e.get("torch_median_s"))
                    + _cell(_num(e.get("ratio_vs_torch"), "{:.3g}x"), e.get("ratio_vs_torch"))
                    + _cell(_bytes(e.get("peak_alloc_bytes")), e.get("peak_alloc_bytes"))
                    + _cell(change, None if not f or f.verdict == "new" else f.change)
                    + _cell("" if not f or f.verdict == "new" else f"{f.p:.2g}") + "</tr>")
    parts.append("<h2>Latest results</h2><p class='muted'>Each benchmark's newest result; change and p against "
                 "its history where the latest run measured it.</p><table class='sortable' id='latest'><thead><tr><th>benchmark</th><th>kind</th>"
                 "<th>kernel ms</th><th>wall ms</th><th>GFLOP/s</th><th>GB/s</th><th>% roofline</th>"
                 "<th>torch ms</th><th>ours/torch</th><th>peak mem</th><th>change</th><th>p</th></tr></thead>"
                 f"<tbody>{''.join(rows)}</tbody></table>")

    # 3. roofline and 4. ratios against torch
    pts = [(_label(r), r.extra_info.get("intensity"), r.extra_info.get("gflops")) for r in results.values()
           if r.extra_info.get("intensity") and r.extra_info.get("gflops")]
    parts.append("<h2 id='roofline'>Roofline</h2>")
    if peak and pts:
        parts.append(svg.roofline_chart("Roofline, latest results: kernel time, float32", pts,
                                        peak["gflops"], peak["gbps"]))
    else:
        parts.append("<p class='muted'>No op benchmark with FLOP and byte counts, or no measured peak.</p>")
    ratios = [(_label(r), r.extra_info.get("ratio_vs_torch")) for r in results.values()
              if r.extra_info.get("ratio_vs_torch")]
    parts.append("<h2 id='against-torch'>Against torch</h2>")
    if ratios:
        tdev = next((r.extra_info.get("torch_device") for r in results.values() if r.extra_info.get("torch_device")),
                    "?")
        parts.append(svg.ratio_chart(f"ours / torch ({tdev}), same shapes, same session", ratios))
    else:
        why = {r.extra_info.get("torch_missing_reason") for r in results.values()} - {None}
        parts.append("<p class='muted'>No torch baseline in the latest run"
                     + (": " + escape("; ".join(sorted(why))) if why else "") + ".</p>")

    # 5. history per benchmark
    parts.append("<h2 id='history'>History</h2><div class='grid-charts'>")
    for name, r in results.items():
        series = [(run, res[name]) for run, res in by_run if name in res]     # (run, result), oldest first
        labels = [run.label for run, _ in series]
        metric = "kernel" if all(res.extra_info.get("kernel_rounds_s") for _, res in series) else "wall"
        samples = [np.asarray(res.samples(metric)[1]) for _, res in series]
        values = [float(np.median(s)) * 1e3 for s in samples]
        band = [(float(np.percentile(s, 25)) * 1e3, float(np.percentile(s, 75)) * 1e3) for s in samples]
        flags = [""]
        for i in range(1, len(series)):
            v = regress.judge([res for _, res in series[:i]], series[i][1], threshold, alpha, metric)["verdict"]
            flags.append(v if v in ("regression", "improvement") else "")
        parts.append(svg.history_chart(f"{_label(r)}"[:70], labels, values, flags, f"{metric} ms", band))
    parts.append("</div>")

    # 6. ladder: the files of this device (their "device" is "platform / device", a prefix of the key), or of none
    for path, data in ladders:
        owner = data.get("device") if isinstance(data, dict) else None
        if owner and not device.lower().startswith(str(owner).lower()):
            continue
        parts.append(f"<h2>Ladder: {escape(path.name)}</h2>" + ladder_html(data))

    env = {"environment": latest.environment, "machine": latest.machine}
    parts.append("<h2>Environment of the latest run</h2><details><summary>show</summary><pre>"
                 f"{escape(json.dumps(env, indent=2))}</pre></details>")
    summary = {"device": device, "runs": len(runs), "latest": latest.label, "date": latest.date,
               "regressions": len(bad), "benchmarks": len(results)}
    return _page(f"sdcl perf: {device}", "".join(parts)), summary


def newest(by_run: list) -> dict:
    """{benchmark: its newest Result} over [(run, results)] oldest first: a run may cover a subset (sdcl perf run
    -k ...)."""
    results: dict = {}
    for _, res in by_run:
        results.update(res)
    return results


def side_by_side_html(history: History, pages: list) -> str:
    """Every benchmark's newest result on each device, one row per benchmark: the kernel median (the wall median,
    marked "wall", where no kernel time was recorded) and ours / torch. pages: [(device, page file)]."""
    latest = {device: newest([(run, history.results(run.id)) for run in history.runs(device)])
              for device, _ in pages}
    first = {n: r for res in latest.values() for n, r in res.items()}
    kinds = {"e2e": 0, "layer": 1, "op": 2}    # as on a device page: the pipeline, its layers, the ops
    names = sorted(first, key=lambda n: (kinds.get(first[n].extra_info.get("kind"), 3), _label(first[n])))
    head = "".join(f"<th><a href='{escape(page)}'>{escape(device)}</a> ms</th><th>ours/torch</th>"
                   for device, page in pages)
    rows = []
    for n in names:
        cells = []
        for device, _ in pages:
            r = latest[device].get(n)
            e = r.extra_info if r else {}
            kernel = e.get("kernel_median_s")
            t = kernel if kernel is not None else (r.median if r else None)
            cells.append(_cell(_ms(t) + ("" if kernel is not None or r is None else " wall"), t)
                         + _cell(_num(e.get("ratio_vs_torch"), "{:.3g}x"), e.get("ratio_vs_torch")))
        rows.append(f"<tr><td title='{escape(n)}'>{escape(_label(first[n]))}</td>"
                    + _cell(escape(str(first[n].extra_info.get("kind", "")))) + "".join(cells) + "</tr>")
    return ("<h2 id='side-by-side'>Devices side by side</h2><p class='muted'>Each benchmark's newest result on each "
            "device: kernel median in ms (the wall median, marked, where no kernel time was recorded), and ours / "
            "torch against that device's own torch baseline; empty where the device has no such benchmark.</p>"
            "<table class='sortable' id='side-by-side-table'><thead><tr><th>benchmark</th><th>kind</th>"
            f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def ladder_html(data) -> str:
    """A ladder JSON as tables: a list of objects is one table; an object shows its scalar fields, then each list
    of objects it holds as a table; anything else as formatted JSON."""
    def table(rows: list) -> str:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        head = "".join(f"<th>{escape(str(k))}</th>" for k in keys)
        body = "".join("<tr>" + "".join(f"<td>{escape(_short(r.get(k)))}</td>" for k in keys) + "</tr>" for r in rows)
        return f"<table class='sortable ladder'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return table(data)
    if isinstance(data, dict):
        out = []
        scalars = {k: v for k, v in data.items() if not isinstance(v, (list, dict))}
        if scalars:
            out.append("<p>" + "; ".join(f"{escape(str(k))}: {escape(_short(v))}" for k, v in scalars.items())
                       + "</p>")
        for k, v in data.items():
            if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
                out.append(f"<h3>{escape(str(k))}</h3>" + table(v))
            elif isinstance(v, (list, dict)):
                out.append(f"<h3>{escape(str(k))}</h3><pre>{escape(json.dumps(v, indent=2))}</pre>")
        return "".join(out)
    return f"<pre>{escape(json.dumps(data, indent=2))}</pre>"


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v) if not isinstance(v, (list, dict)) else json.dumps(v)


def find_ladders(db_path: Path | list, extra: list | None = None) -> list:
    """[(path, parsed JSON)] of ladder*.json beside the history file(s) and of the files given."""
    folders = dict.fromkeys(Path(p).resolve().parent for p in (db_path if isinstance(db_path, list) else [db_path]))
    paths = [p for f in folders for p in sorted(f.glob("ladder*.json"))] + [Path(p) for p in extra or []]
    out = []
    for p in dict.fromkeys(paths):
        try:
            out.append((p, json.loads(Path(p).read_text())))
        except ValueError as e:
            raise BadInput(f"{p}: not a ladder JSON file ({e})") from None
    return out


def build(db: str | Path | list, out: str | Path, ladder: list | None = None, threshold: float = regress.THRESHOLD,
          alpha: float = regress.ALPHA) -> list:
    """Write the site of one history file, or of several merged (a list; *.sqlite.gz too), into `out`; returns the
    written files (index.html first). The site is written into a new folder beside `out` and then put in its
    place: a failure leaves an earlier site whole and no empty folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: exists and is not a folder")
    dbs = [Path(p) for p in (db if isinstance(db, list) else [db])]
    for p in dbs:
        if not p.exists():
            raise BadInput(f"--db {p}: no such history file", hint="run `sdcl perf run` or `sdcl perf import` first")
    ladders = find_ladders(dbs, ladder)
    with tempfile.TemporaryDirectory(prefix="sdcl-dashboard-") as scratch:
        if len(dbs) > 1 or dbs[0].name.endswith(".gz"):
            merged = Path(scratch) / "merged.sqlite"
            with History(merged) as h:   # a corrupt history is refused here, before anything is written
                for p in dbs:        # the same run reached through two files is kept once
                    h.merge(p, skip_known=True)
            dbs = [merged]
        with History(dbs[0]) as h:   # (one plain history: refused here when corrupt)
            pages = [(device, *device_page(h, device, ladders, threshold, alpha)) for device in h.devices()]
            names = [(device, f"device-{_slug(device)}.html") for device, _, _ in pages]
            compare = side_by_side_html(h, names) if len(names) > 1 else ""
    return _write_site(out, pages, ladders, compare)


def _write_site(out: Path, pages: list, ladders: list, compare: str) -> list:
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.absolute().parent))
    try:
        written, summaries = [], []
        for device, html, summary in pages:
            name = f"device-{_slug(device)}.html"
            (tmp / name).write_text(html)
            written.append(name)
            summaries.append((name, summary))
        rows = "".join(
            f"<tr class='{'regression' if s['regressions'] else ''}'><td><a href='{escape(name)}'>"
            f"{escape(s['device'])}</a></td><td>{s['runs']}</td><td>{escape(s['latest'])}</td>"
            f"<td>{escape(s['date'])}</td><td>{s['benchmarks']}</td><td>{s['regressions']}</td></tr>"
            for name, s in summaries)
        body = ("<h1>sdcl benchmarks</h1>"
                + (f"<table class='sortable' id='devices'><thead><tr><th>device</th><th>runs</th><th>latest</th>"
                   f"<th>date</th><th>benchmarks</th><th>regressions</th></tr></thead><tbody>{rows}</tbody></table>"
                   if summaries else "<p>The history is empty: run <code>sdcl perf run</code> first.</p>")
                + compare
                + "".join(f"<h2>Ladder: {escape(p.name)}</h2>" + ladder_html(d) for p, d in ladders))
        (tmp / "index.html").write_text(_page("sdcl benchmarks", body))
        tmp.chmod(0o755)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / "index.html"] + [out / name for name in written]
