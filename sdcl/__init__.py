"""sdcl: Stable Diffusion on OpenCL, with a NumPy golden reference beside it."""

__version__ = "0.1.0"
