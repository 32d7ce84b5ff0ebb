"""Weight validation: compare a set of tensors with the {key: shape} table a model declares (`param_shapes`).

Every problem is found and reported at once, grouped by kind (missing / unexpected / wrong shape / not floating
point), keys in natural order. The models check the weights they are given with `check_shapes`; the checkpoint
readers and writers (`sdcl.checkpoint`) build on `find_problems` and raise the same `CheckpointError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np


class CheckpointError(ValueError):
    """Weights that cannot be read, written or used as the model the config describes. The message names the
    weights (or the file) and every offending key."""


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

    def lines(self, indent: str = "  ") -> list:
        groups = (("missing", self.missing), ("unexpected", self.unexpected), ("wrong shape", self.wrong_shape),
                  ("not floating point", self.not_float))
        return [f"{indent}{title} ({len(items)}): " + ", ".join(sorted(items, key=natural_key))
                for title, items in groups if items]


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
        raise CheckpointError(f"{what} do not match the model:\n" + "\n".join(p.lines()))
