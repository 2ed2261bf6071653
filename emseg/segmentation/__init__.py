"""Cells from a prediction: border thinning, the registry of cell methods, per-cell measurements."""
