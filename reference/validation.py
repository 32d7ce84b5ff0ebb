"""Weight validation: compare a set of tensors with the {key: shape} table a model declares (`param_shapes`).

Every problem is found at once and reported grouped by kind (missing / unexpected / wrong shape / not floating
point), keys in natural order: a message states the counts on its first line and lists the first LIST_LIMIT keys of
each group ("and N more"), so that it stays a few KB long; the uncapped listing rides along (`CheckpointError.details`)
for a report file. The models check the weights they are given with `check_shapes`; the checkpoint
readers and writers (`sdcl.checkpoint`) build on `find_problems` and raise the same `CheckpointError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np


class CheckpointError(ValueError):
    """Weights that cannot be read, written or used as the model the config describes. The message's first line
    names the weights (or the file) and what is wrong with them; `hint`, where not None, says what to do (a key
    mismatch's message repeats it as its second line, `hint: ...`, then lists the offending keys, each group capped).
    `details`, where not None, is the uncapped listing (every key), for a report file."""

    def __init__(self, message: str, hint: str | None = None, details: str | None = None):
        super().__init__(message)
        self.hint = hint or None
        self.details = details


LIST_LIMIT = 10  # keys listed per group in a message; the rest are counted ("and N more")


def natural_key(key: str):
    """Sort key that orders input_blocks.2 before input_blocks.10."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", key)]


@dataclass
class Problems:
    """What is wrong with a set of tensors, by kind; each entry names a key (and what was expected)."""
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    wrong_shape: list = field(default_factory=list)
    not_float: list = field(default_factory=list)

    def __bool__(self):
        return bool(self.missing or self.unexpected or self.wrong_shape or self.not_float)

    def _groups(self):
        return [(title, items) for title, items in (("missing", self.missing), ("unexpected", self.unexpected),
                                                    ("wrong shape", self.wrong_shape),
                                                    ("not floating point", self.not_float)) if items]

    def lines(self, indent: str = "  ", limit: int | None = LIST_LIMIT) -> list:
        """One line per group, keys in natural order: the first `limit` of them and "and N more" (None: all)."""
        out = []
        for title, items in self._groups():
            keys = sorted(items, key=natural_key)
            shown = keys if limit is None else keys[:limit]
            more = f" and {len(keys) - len(shown)} more" if len(shown) < len(keys) else ""
            out.append(f"{indent}{title} ({len(keys)}): " + ", ".join(shown) + more)
        return out

    def summary(self) -> str:
        """The counts, e.g. "3 missing, 12 wrong shape"."""
        return ", ".join(f"{len(items)} {title}" for title, items in self._groups())


def is_float_dtype(dt) -> bool:
    """Whether `dt` (a NumPy dtype or anything np.dtype accepts; None for an object without one) is a float."""
    if dt is None:
        return False
    try:
        return np.dtype(dt).kind == "f"
    except TypeError:
        return False


def find_problems(expected: dict, shapes: dict, dtypes: dict | None = None, ignore=None,
                  is_float=is_float_dtype) -> Problems:
    """Compare found tensors ({key: shape}, and optionally {key: dtype}) with the expected {key: shape}. Keys for
    which ignore(key) is true are not reported as unexpected; is_float(dtype) says whether a dtype is accepted
    (the default takes NumPy dtypes; a file reader passes its own for the file's dtype names)."""
    p = Problems()
    for key, shape in shapes.items():
        if key in expected:
            if tuple(shape) != tuple(expected[key]):
                p.wrong_shape.append(f"{key}: expected {tuple(expected[key])}, got {tuple(shape)}")
            if dtypes is not None and not is_float(dtypes[key]):
                p.not_float.append(f"{key}: {dtypes[key]}")
        elif ignore is None or not ignore(key):
            p.unexpected.append(key)
    p.missing = [k for k in expected if k not in shapes]
    return p


def check_shapes(expected: dict, arrays: dict, what: str) -> None:
    """Raise CheckpointError listing every missing, unexpected, mis-shaped or non-float entry of the flat
    {key: array} `arrays` (anything with .shape and .dtype: NumPy or pyopencl arrays) against {key: shape}."""
    p = find_problems(expected, {k: tuple(a.shape) for k, a in arrays.items()},
                      {k: getattr(a, "dtype", None) for k, a in arrays.items()})
    if p:
        raise CheckpointError(f"{what} do not match the model: {p.summary()}\n" + "\n".join(p.lines()),
                              details="\n".join(p.lines(limit=None)))
