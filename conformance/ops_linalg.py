"""Registry rows: linalg ops."""

ROWS = []
