"""Registry rows: activations, elementwise and layout ops."""

from __future__ import annotations

from hypothesis import strategies as st

from conformance.registry import Case, OpSpec, Tolerance, Variant, elementwise_bytes
from conformance.strategies import randn, seeds, shape
from reference import ops as R

# One transcendental (exp) and one division per element: a few ulps in float32 (OpenCL's exp is 3 ulp, native
# division 2.5 ulp), ~1 ulp in float64. atol covers results near zero, where relative error is meaningless.
_ACT_TOL = {"float32": Tolerance(1e-6, 1e-7, "exp: 3 ulp + division: 2.5 ulp in OpenCL float (2^-23 = 1.2e-7)"),
            "float64": Tolerance(1e-14, 1e-16, "exp and division within a few ulp of double (2^-52 = 2.2e-16)")}


@st.composite
def _any_shape(draw):
    return Case("random", tuple(randn(draw(seeds()), draw(shape()), scale=3.0)))


def _sd_activation_cases():
    # SD 2.1-base 64x64 latent, batch 2 (CFG): ResBlock activations at the first and last UNet levels.
    return [Case("sd21_unet_l0", tuple(randn(0, (2, 320, 64, 64)))),
            Case("sd21_unet_l3", tuple(randn(1, (2, 1280, 8, 8))))]


ROWS = [
    OpSpec("silu", R.silu, (Variant("naive"),), _any_shape, _sd_activation_cases, _ACT_TOL,
           flops=lambda c: 4 * c.args[0].size, bytes=elementwise_bytes),
]
