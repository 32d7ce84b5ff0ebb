"""Seeded random weights from a table of parameter shapes (no weights can be downloaded here).

Each tensor draws from its own generator, seeded by (seed, key), so a tensor's values do not depend on which
other keys exist or on their order. Scales keep activations O(1) through deep stacks, so a random model still
produces finite, non-trivial outputs: matrices and kernels ~ N(0, 1/fan_in), norm scales ~ 1 + N(0, 0.1^2),
biases and embeddings small.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _rng(seed: int, key: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def random_tensor(key: str, shape: tuple, seed: int, dtype=np.float32) -> np.ndarray:
    rng = _rng(seed, key)
    leaf = key.rsplit(".", 1)[-1]
    is_norm = any(n in key for n in ("norm", "ln_")) and leaf == "weight"
    if is_norm:
        w = 1.0 + 0.1 * rng.standard_normal(shape)
    elif leaf == "bias" or len(shape) == 1:
        w = 0.02 * rng.standard_normal(shape)
    elif "embedding" in key:
        w = 0.5 * rng.standard_normal(shape)
    else:
        fan_in = int(np.prod(shape[1:]))
        w = rng.standard_normal(shape) / np.sqrt(fan_in)
    return w.astype(dtype)


def random_weights(shapes: dict, seed: int = 0, dtype=np.float32) -> dict:
    """{key: shape} -> {key: seeded random array}."""
    return {k: random_tensor(k, tuple(s), seed, dtype) for k, s in shapes.items()}
