"""`sdcl report merge` on gate reports written by the gate's own writer (conformance/report.py write_reports): the
merged matrix (coverage-matrix.json and .md) must say, cell by cell, what each report says; reports of one device
and profile fill one column, where a FAIL outranks a pass; bad folders and files are one-line errors naming them.
No device: the rows are made here and written as the gate writes them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sdcl.cli import main
from sdcl.conformance.report import Row, write_reports

POCL = "Portable Computing Language / pthread-cpu"
PHONE = "rusticl / llvmpipe"
NO_FP64 = "device has no fp64 (cl_khr_fp64)"
NO_PTX = "device lacks nvidia_ptx (inline NVIDIA PTX: mma.sync on an NVIDIA GPU)"
F32_ONLY = "matmul mma_tf32 implements float32 only"
FAILURE = "knobs {'TS': 8}: max abs error 3.1e-02 > tolerance at case matmul(float32[17, 5], float32[5, 3])"


def _write(folder: Path, device: str, profile: str, rows: list) -> Path:
    write_reports(rows, folder, device, profile)
    return folder / "report.json"


@pytest.fixture
def reports(tmp_path):
    """Four reports: PoCL ci split over two calls (matmul tiled float32 passes in one and fails in the other), PoCL
    thorough, and a device without fp64 (skips with three distinct reasons, and model rows)."""
    op = lambda *a, **k: Row("op", *a, **k)             # noqa: E731
    split_a = _write(tmp_path / "pocl" / "call1", POCL, "ci", [
        op("matmul", "naive", "float32", POCL, cases=14, configs=1),
        op("matmul", "tiled", "float32", POCL, cases=38, configs=3),
        op("silu", "naive", "float64", POCL, cases=14, configs=1)])
    split_b = _write(tmp_path / "pocl" / "call2", POCL, "ci", [
        op("matmul", "tiled", "float32", POCL, cases=5, configs=1, passed=False, failure=FAILURE),
        op("matmul", "mma_tf32", "float32", POCL, skipped=NO_PTX),
        op("gelu", "naive", "float32", POCL, cases=13, configs=1, notes="knobs {'WG': 1024}: refused")])
    thorough = _write(tmp_path / "pocl-deep", POCL, "thorough", [
        op("matmul", "naive", "float32", POCL, cases=2002, configs=1)])
    phone = _write(tmp_path / "phone", PHONE, "ci", [
        op("matmul", "naive", "float32", PHONE, cases=14, configs=1),
        op("matmul", "naive", "float64", PHONE, skipped=NO_FP64),
        op("matmul", "mma_tf32", "float32", PHONE, skipped=NO_PTX),
        op("matmul", "mma_tf32", "float64", PHONE, skipped=F32_ONLY),
        op("silu", "naive", "float64", PHONE, skipped=NO_FP64),
        Row("model", "sd2/unet.mid", "default", "float32", PHONE, cases=1, metric="rel L2 1e-07"),
        Row("model", "sd2/unet.mid", "default", "float64", PHONE, skipped=NO_FP64)])
    return tmp_path, [split_a, split_b, thorough, phone]


def _merge(tmp_path, *folders) -> tuple:
    out = tmp_path / "merged"
    assert main(["report", "merge", *map(str, folders), "--out", str(out)]) == 0
    return json.loads((out / "coverage-matrix.json").read_text()), (out / "coverage-matrix.md").read_text()


def _expected(reports: list) -> dict:
    """{(device, profile): {row key: row}} from the report files themselves, a FAIL kept over a pass."""
    cols: dict = {}
    for path in reports:
        data = json.loads(path.read_text())
        col = cols.setdefault((data["device"], data["profile"]), {})
        for r in data["rows"]:
            key = (r["kind"], r["name"], r["variant"], r["dtype"])
            if key not in col or r["verdict"] == "FAIL":
                col[key] = r
    return cols


def _md_cells(md: str, section: str) -> tuple:
    """(column labels, {(name, variant, dtype): [cell, ...]}) of one table of the markdown."""
    table = md.split(f"## {section}\n\n")[1].split("\n\n")[0].splitlines()
    split = lambda line: [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]    # noqa: E731
    return split(table[0])[3:], {tuple(split(line)[:3]): split(line)[3:] for line in table[2:]}


def test_each_cell_says_what_its_report_says(reports):
    tmp_path, files = reports
    data, md = _merge(tmp_path, tmp_path / "pocl", tmp_path / "pocl-deep", tmp_path / "phone")
    expected = _expected(files)
    assert [(c["device"], c["profile"]) for c in data["columns"]] == list(expected)   # the split run: one column
    assert sorted(map(Path, data["columns"][0]["reports"])) == sorted(files[:2])
    reasons = data["skip_reasons"]
    assert sorted(reasons) == sorted({NO_FP64, NO_PTX, F32_ONLY})
    labels, op_cells = _md_cells(md, "Ops")
    _, model_cells = _md_cells(md, "Model checks")
    footnotes = dict(re.findall(r"^(\d+)\. (.+)$", md.split("## Skip reasons")[1], re.MULTILINE))
    for i, ((device, profile), rows) in enumerate(expected.items()):
        assert profile in labels[i] and device.split(" / ")[1] in labels[i]
        for key, r in rows.items():
            cell = next(x["cells"][i] for x in data["rows"] if (x["kind"], x["name"], x["variant"], x["dtype"]) == key)
            text = (op_cells if key[0] == "op" else model_cells)[key[1:]][i]
            assert cell["verdict"] == r["verdict"] and cell["cases"] == r["cases"]
            if r["verdict"] == "pass":
                want = (f"pass {r['cases']}" + (f" x{r['configs']} knobs" if r["configs"] > 1 else "")
                        + (" (notes)" if r.get("notes") else ""))      # what the row left out, under "Notes"
                assert text == want, (key, text)
            elif r["verdict"] == "FAIL":
                assert text.startswith("FAIL knobs {'TS': 8}: max abs error") and len(text) < len(r["failure"])
                assert r["failure"] in md                        # the whole failure, under the table
            else:
                m = re.fullmatch(r"skip: (.+) \[(\d+)\]", text)
                assert m and len(m[1].split()) <= 5, text
                assert footnotes[m[2]] == r["skipped"] == reasons[int(m[2]) - 1]
        # the rows this column's reports lack are "-" (null in the JSON)
        for x in data["rows"]:
            key = (x["kind"], x["name"], x["variant"], x["dtype"])
            if key not in rows:
                assert x["cells"][i] is None
                assert (op_cells if key[0] == "op" else model_cells)[key[1:]][i] == "-"
    assert "knobs {'WG': 1024}: refused" in md.split("## Notes")[1]


def test_short_reasons_tell_the_reasons_apart(reports):
    tmp_path, _ = reports
    _, md = _merge(tmp_path, tmp_path / "phone")
    _, cells = _md_cells(md, "Ops")
    shorts = {cells[k][0].rsplit(" [", 1)[0] for k in [("matmul", "naive", "float64"), ("matmul", "mma_tf32",
                                                                                         "float32"),
                                                       ("matmul", "mma_tf32", "float64")]}
    assert shorts == {"skip: no fp64", "skip: no nvidia_ptx", "skip: float32 only"}


def test_totals_count_each_column_from_its_reports(reports):
    tmp_path, files = reports
    data, md = _merge(tmp_path, tmp_path)           # one folder above them all: every report.json under it
    expected = _expected(files)
    all_keys = {k for rows in expected.values() for k in rows}
    totals_md = {line.split(" | ")[0].lstrip("| "): [int(x) for x in line.strip(" |").split(" | ")[1:]]
                 for line in md.split("## Totals")[1].split("\n\n")[1].splitlines()[2:]}
    for col in data["columns"]:
        rows = expected[(col["device"], col["profile"])].values()
        want = {"rows": len(rows), "pass": sum(r["verdict"] == "pass" for r in rows),
                "FAIL": sum(r["verdict"] == "FAIL" for r in rows), "skip": sum(r["verdict"] == "skip" for r in rows),
                "missing": len(all_keys) - len(rows), "cases": sum(r["cases"] for r in rows if r["verdict"] != "skip")}
        assert col["totals"] == want
        assert totals_md[col["label"]] == [want[k] for k in ("rows", "pass", "FAIL", "skip", "missing", "cases")]


def test_ops_follow_the_registry_and_models_come_last(reports):
    tmp_path, _ = reports
    data, _ = _merge(tmp_path, tmp_path / "phone", tmp_path / "pocl")
    keys = [(x["kind"], x["name"], x["variant"], x["dtype"]) for x in data["rows"]]
    from sdcl.registry import REGISTRY
    names = [k[1] for k in keys if k[0] == "op"]
    assert names == sorted(names, key=list(REGISTRY).index)
    variants = [k[2] for k in keys if k[:2] == ("op", "matmul")]
    order = [v.name for v in REGISTRY["matmul"].variants]
    assert variants == sorted(variants, key=order.index)
    assert [k[0] for k in keys] == sorted((k[0] for k in keys), key=lambda kind: kind != "op")


def _refused(tmp_path, capsys, args, code, *fragments) -> None:
    out = tmp_path / "merged"
    assert main(["report", "merge", *map(str, args), "--out", str(out)]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "error:" in err[0] and all(f in err[0] for f in map(str, fragments)), err
    assert not out.exists()                      # nothing written


def test_a_folder_without_reports_is_refused(reports, capsys):
    tmp_path, _ = reports
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.json").write_text("{}")
    _refused(tmp_path, capsys, [tmp_path / "pocl", tmp_path / "empty"], 2, tmp_path / "empty", "no report.json")
    _refused(tmp_path, capsys, [tmp_path / "nowhere"], 2, tmp_path / "nowhere", "no such folder")


@pytest.mark.parametrize("text,words", [
    ('{"device": "x", "profile": "ci", "rows": [', "corrupt JSON"),
    ("\x00\xff\xfe", "not a conformance report"),
    ('{"benchmarks": []}', "not an sdcl conformance report"),
    ('{"device": "x", "profile": "ci", "rows": [{"kind": "op", "name": "silu"}]}',
     "row 0 lacks variant, dtype, verdict"),
    (('{"device": "x", "profile": "ci", "rows": [{"kind": "op", "name": "silu", "variant": "naive", '
      '"dtype": "float32", "verdict": "maybe"}]}'), "verdict 'maybe'"),
], ids=["corrupt", "binary", "foreign", "row_fields", "verdict"])
def test_a_report_that_is_not_ours_is_refused_by_name(reports, capsys, text, words):
    tmp_path, _ = reports
    bad = tmp_path / "other" / "run" / "report.json"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(text.encode("latin-1"))
    _refused(tmp_path, capsys, [tmp_path / "pocl", tmp_path / "other"], 2, bad, words)
