"""Launchers: the host code of each variant, named by its registry declaration (Variant.launcher)."""
