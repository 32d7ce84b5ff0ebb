"""docs/API.md runs as written: its python blocks, in order, in one namespace, on the default device (so the
documented API cannot drift from the code). In a subprocess: the doc loads a plugin, which changes the registry."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "API.md"

RUN = """
import re, sys
blocks = re.findall(r"```python\\n(.*?)```", open(sys.argv[1]).read(), re.S)
assert len(blocks) >= 4, len(blocks)
namespace = {}
for i, block in enumerate(blocks):
    exec(compile(block, f"docs/API.md block {i + 1}", "exec"), namespace)
assert namespace["row"].verdict == "pass" and namespace["err"] < 1e-3
print("API.md ran")
"""


@pytest.mark.skipif(not DOC.is_file(), reason="docs/ is not beside these tests")
def test_the_api_doc_runs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SDCL_PLUGINS"}
    res = subprocess.run([sys.executable, "-c", RUN, str(DOC)], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=600)
    assert res.returncode == 0 and "API.md ran" in res.stdout, res.stderr[-3000:]
