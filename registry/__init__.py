"""The op registry, sdcl's bottom layer: one row per op, one declaration per variant.

Rows live in the family modules (linalg: matmul, batched_matmul, linear, conv2d, attention; norm: group_norm,
group_norm_silu, layer_norm, softmax; elementwise: activations, embeddings, add, mul and layout ops) and are
collected in `REGISTRY` (op name -> OpSpec). The row types are in sdcl.registry.spec, the case generators' helpers
in sdcl.registry.fuzz. This package imports only NumPy and sdcl.reference: the OpenCL runtime, the policy, the gate,
the tuner and the benchmarks read it, never the other way round. Installed plugins (sdcl.registry.plugins) add their
variants when it is first imported; `load_plugin(path)` adds one by path.
"""

from __future__ import annotations

from sdcl.registry import plugins
from sdcl.registry.spec import DTYPES, FEATURES, TIERS, Case, OpSpec, Tolerance, Variant, elementwise_bytes


def _collect() -> dict:
    from sdcl.registry import elementwise, linalg, norm
    rows = {}
    for module in (linalg, norm, elementwise):
        for spec in module.ROWS:
            if spec.name in rows:
                raise ValueError(f"op {spec.name} declared twice in the registry")
            rows[spec.name] = spec
    plugins.load_all(rows)
    return rows


REGISTRY: dict = _collect()


def load_plugin(path: str) -> None:
    """Add the variants of the plugin module or package at `path` to REGISTRY (sdcl.registry.plugins)."""
    plugins.load_path(REGISTRY, path)


def tiers() -> list:
    """The ladder's tiers in order: TIERS, then any tier a variant names that TIERS does not (a plugin's)."""
    out = list(TIERS)
    for spec in REGISTRY.values():
        for v in spec.variants:
            if v.tier not in out:
                out.append(v.tier)
    return out


__all__ = ["DTYPES", "FEATURES", "REGISTRY", "TIERS", "Case", "OpSpec", "Tolerance", "Variant", "elementwise_bytes",
           "load_plugin", "tiers"]
