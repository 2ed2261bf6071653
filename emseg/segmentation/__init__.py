"""Cells from a prediction: Fiji's border thinning, the registry of cell methods, per-cell measurements.

* [`thinning`][emseg.segmentation.thinning]: the membrane map turned around, and Fiji's
  border thinning: the cells the ISBI scores judge;
* [`methods`][emseg.segmentation.methods]: the cell methods `segment.method` names
  (components, watershed, multicut, GASP, Mutex Watershed) and their tuning;
* [`measurements`][emseg.segmentation.measurements]: one row per cell, and a per-slice summary.
"""
