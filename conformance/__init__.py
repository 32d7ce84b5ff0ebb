"""Conformance: the op registry, the device-vs-reference checks and the gate."""

# The Hypothesis profiles (registered in sdcl.conformance.profiles, which imports Hypothesis; the CLI reads these
# names without it).
PROFILES = ("ci", "dev", "thorough", "oclgrind")
