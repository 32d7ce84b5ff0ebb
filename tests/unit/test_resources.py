"""sdcl's data folders are found wherever it is installed, and a folder that merely shares the name is not taken
for them (a cache folder named sdcl/kernels in the working directory, on sys.path under `python -m`)."""

import sys

import pytest

import sdcl.resources as r


def test_data_folders_hold_their_files():
    assert (r.kernel_dir() / "common.h").is_file()
    assert (r.shipped_tuning_dir() / "default.json").is_file()


def test_a_decoy_folder_on_sys_path_is_not_taken(tmp_path, monkeypatch):
    real = r.kernel_dir()
    (tmp_path / "sdcl" / "kernels").mkdir(parents=True)          # e.g. SDCL_CACHE_DIR=./sdcl, the cwd on sys.path
    (tmp_path / "sdcl" / "kernels" / "abc.bin").write_bytes(b"\0")
    monkeypatch.setattr(sys, "path", [str(tmp_path)] + sys.path)
    import sdcl
    monkeypatch.setattr(sdcl, "__path__", list(sdcl.__path__) + [str(tmp_path / "sdcl")])
    assert r.kernel_dir() == real


def test_missing_folder_says_reinstall(monkeypatch):
    monkeypatch.setitem(r._MARKERS, "kernels", "no-such-file.h")
    with pytest.raises(FileNotFoundError, match="reinstall sdcl"):
        r.kernel_dir()
