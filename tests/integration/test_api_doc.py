"""docs/API.md runs as written: its python blocks, in order, in one namespace, on the default device (so the
documented API cannot drift from the code)."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "API.md"


@pytest.mark.skipif(not DOC.is_file(), reason="docs/ is not beside these tests")
def test_the_api_doc_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/API.md block {i + 1}", "exec"), namespace)
    assert namespace["row"].verdict == "pass" and namespace["err"] < 1e-3
