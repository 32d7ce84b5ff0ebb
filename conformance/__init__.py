"""Conformance: the op registry, the device-vs-reference checks and the gate."""
