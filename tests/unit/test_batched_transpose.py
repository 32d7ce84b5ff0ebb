"""permute `tiled` handles the permutations registry.elementwise.batched_transpose admits; its launcher reads the
shape from opencl_impl.shapes.fold_permute. The two must agree on every permutation, size-1 axes included."""

import itertools

import numpy as np

from sdcl.opencl_impl.shapes import fold_permute
from sdcl.registry.elementwise import batched_transpose


def _folds_to_transpose(shape, axes) -> bool:
    dims, strides = fold_permute(shape, axes)
    b, p, q = dims[1:]
    return dims[0] == 1 and strides[2:] == [1, p] and (b == 1 or strides[1] == p * q) and p > 1 and q > 1


def test_predicate_matches_the_fold():
    seen = set()
    for shape in [(2, 3, 4, 5), (1, 3, 4, 5), (2, 1, 4, 5), (2, 3, 1, 5), (3, 4, 5), (3, 1, 5), (3, 4), (1, 4)]:
        x = np.zeros(shape)
        for axes in itertools.permutations(range(len(shape))):
            got = batched_transpose((x, axes), {})
            assert got == _folds_to_transpose(shape, axes), (shape, axes)
            seen.add(got)
    assert seen == {True, False}


def test_unet_layouts():
    x = np.zeros((2, 320, 64, 64))
    assert batched_transpose((x,), {"axes": (0, 2, 3, 1)})          # NCHW -> NHWC
    assert batched_transpose((np.zeros((2, 64, 64, 320)),), {"axes": (0, 3, 1, 2)})
    assert not batched_transpose((x,), {"axes": (0, 1, 2, 3)})      # a copy
    assert not batched_transpose((np.zeros((2, 77, 16, 64)),), {"axes": (0, 2, 1, 3)})   # heads: D stays innermost
