"""Registry rows: norm ops."""

ROWS = []
