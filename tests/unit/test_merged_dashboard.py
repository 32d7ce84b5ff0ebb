"""`sdcl report merge` on benchmark histories of several machines: one dashboard whose index shows each benchmark's
newest result on every device side by side, with a page per device; the same run reached through two files counted
once; a .sqlite.gz taken as it is; a history that is not one refused by name. Histories made here from small
pytest-benchmark documents (no device)."""

from __future__ import annotations

import gzip
import re
import shutil
from html import unescape

import pytest

from sdcl.cli import main
from sdcl.perf.history import History

PHONE = "rusticl / llvmpipe / 22.3"
GPU = "NVIDIA CUDA / NVIDIA H200 / 580"


def _doc(device: str, date: str, commit: str, kernels: dict) -> dict:
    """A pytest-benchmark JSON document of one run: {benchmark short name: kernel seconds per round}."""
    def bench(name, k):
        extra = {"kind": "op", "op": name.split("-")[0], "variant": "naive", "case": name,
                 "kernel_rounds_s": k, "kernel_median_s": sorted(k)[len(k) // 2]}
        if name.startswith("silu"):
            extra["ratio_vs_torch"] = 2.0
        return {"fullname": f"perf/test_bench_ops.py::test_op[{name}]", "name": name,
                "stats": {"data": [x * 1.5 for x in k], "median": sorted(k)[len(k) // 2] * 1.5}, "extra_info": extra}
    return {"machine_info": {"sdcl": {"device": device}}, "commit_info": {"id": commit}, "datetime": date,
            "benchmarks": [bench(n, k) for n, k in kernels.items()]}


@pytest.fixture
def machines(tmp_path):
    """Two machines' folders: the phone's history (two runs) and the GPU's, gzipped, holding a copy of the phone's
    first run too (imported there); plus a copy of the phone's history in a third folder."""
    (tmp_path / "phone").mkdir()
    phone = History(tmp_path / "phone" / "perf-history.sqlite")
    phone.import_json(_doc(PHONE, "2026-01-01", "aaa", {"silu-l0": [3e-3, 3.2e-3, 3.1e-3],
                                                        "softmax-l0": [5e-3, 5e-3, 5e-3]}), source="run1.json")
    phone.import_json(_doc(PHONE, "2026-01-02", "bbb", {"silu-l0": [2e-3, 2.1e-3, 2.2e-3]}), source="run2.json")
    phone.close()
    gpu = History(tmp_path / "gpu-plain.sqlite")
    gpu.import_json(_doc(GPU, "2026-01-03", "bbb", {"silu-l0": [1e-5, 1.1e-5, 1.2e-5],
                                                   "conv2d-l0": [4e-4, 4e-4, 4e-4]}), source="gpu.json")
    gpu.import_json(_doc(PHONE, "2026-01-01", "aaa", {"silu-l0": [3e-3, 3.2e-3, 3.1e-3],
                                                     "softmax-l0": [5e-3, 5e-3, 5e-3]}), source="run1.json")
    gpu.close()
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "perf-history.sqlite.gz").write_bytes(gzip.compress((tmp_path / "gpu-plain.sqlite")
                                                                           .read_bytes()))
    (tmp_path / "gpu-plain.sqlite").unlink()
    (tmp_path / "again").mkdir()
    shutil.copy(tmp_path / "phone" / "perf-history.sqlite", tmp_path / "again" / "copy.sqlite")
    return tmp_path


def _side_by_side(index: str) -> tuple:
    """(device headers, {benchmark title: [(ms text, data-v), ...]}) of the index's side-by-side table."""
    table = index.split("id='side-by-side-table'")[1].split("</table>")[0]
    heads = [unescape(h) for h in re.findall(r"<th><a [^>]*>([^<]*)</a> ms</th>", table)]
    rows = {}
    for title, cells in re.findall(r"<tr><td title='([^']*)'>.*?</td><td>op</td>(.*?)</tr>", table):
        rows[unescape(title)] = re.findall(r'<td(?: data-v="([^"]*)")?>([^<]*)</td>', cells)
    return heads, rows


def test_devices_side_by_side_show_each_newest_result(machines):
    out = machines / "merged"
    assert main(["report", "merge", str(machines / "phone"), str(machines / "gpu"), str(machines / "again"),
                 "--out", str(out)]) == 0
    assert not (out / "coverage-matrix.md").exists()          # histories only: no matrix
    heads, rows = _side_by_side((out / "dashboard" / "index.html").read_text())
    assert sorted(heads) == sorted([PHONE, GPU])
    col = {d: 2 * heads.index(d) for d in heads}                # each device: ms, then ours/torch
    # newest per device: the phone's silu from its second run, its softmax from the first (not measured since)
    want = {("silu-l0", PHONE): 2.1e-3, ("softmax-l0", PHONE): 5e-3, ("silu-l0", GPU): 1.1e-5,
            ("conv2d-l0", GPU): 4e-4, ("softmax-l0", GPU): None, ("conv2d-l0", PHONE): None}
    for (name, device), seconds in want.items():
        value, text = rows[f"perf/test_bench_ops.py::test_op[{name}]"][col[device]]
        if seconds is None:
            assert (value, text) == ("", "")
        else:
            assert float(value) == pytest.approx(seconds) and float(text) == pytest.approx(seconds * 1e3, rel=1e-3)
    ratio = rows["perf/test_bench_ops.py::test_op[silu-l0]"][col[GPU] + 1]
    assert ratio[1] == "2x"
    # one page per device; the phone's first run, in all three files, counted once
    pages = sorted((out / "dashboard").glob("device-*.html"))
    assert len(pages) == 2
    phone_page = next(p.read_text() for p in pages if "rusticl" in p.name)
    assert "<p>2 run(s); latest bbb" in phone_page


def test_one_device_has_no_side_by_side_table(machines):
    out = machines / "merged"
    assert main(["report", "merge", str(machines / "phone"), "--out", str(out)]) == 0
    assert "side-by-side" not in (out / "dashboard" / "index.html").read_text()


@pytest.mark.parametrize("name,data,words", [
    ("perf-history.sqlite.gz", b"not gzip at all", "not a gzipped history"),
    ("perf-history.sqlite", b"this is not an SQLite database" * 40, "not an sdcl benchmark history"),
], ids=["bad_gzip", "not_sqlite"])
def test_a_bad_history_is_refused_by_name(machines, capsys, name, data, words):
    bad = machines / "broken" / name
    bad.parent.mkdir()
    bad.write_bytes(data)
    out = machines / "merged"
    assert main(["report", "merge", str(machines / "phone"), str(bad.parent), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert str(bad) in err[0] and words in err[0], err
    assert not out.exists()
    assert bad.read_bytes() == data
