"""Defaults that several layers share, kept free of torch so that the `emseg` parser can show them at once.

The params schema ([`emseg.config.params`][emseg.config.params]), the sliding-window path, the model
file, the affinity targets and `emseg predict`'s options all take these from here:
`DEVICES` (where a model runs), `OVERLAP` and `TILE_BATCH` (the sliding window),
`FALLBACK_THRESHOLD` (the threshold of a model file without a validated one), `BLOCK_SLICES`
and `CONFIDENCE` (the block bootstrap of [`emseg.evaluation.statistics`][emseg.evaluation.statistics]),
and `DEFAULT_OFFSETS` (the affinity offsets). The source gives each one's meaning beside it.
"""

#: where a model runs: ``auto`` = CUDA when present, else the CPU
DEVICES = ("auto", "cpu", "cuda")
#: overlap of neighbouring sliding-window tiles, as a fraction of the tile
OVERLAP = 0.5
#: tiles per forward pass
TILE_BATCH = 4
#: cell/membrane threshold of a model file that carries no validated one
FALLBACK_THRESHOLD = 0.5
#: contiguous slices a bootstrap resamples together: serial sections 50 nm apart are correlated
BLOCK_SLICES = 3
#: the confidence level of intervals
CONFIDENCE = 0.95
#: affinity offsets (dy, dx): the nearest neighbours, then long-range ones along both axes (Mutex Watershed, Wolf et al. 2020, in 2-D)
DEFAULT_OFFSETS = ((-1, 0), (0, -1), (-3, 0), (0, -3), (-9, 0), (0, -9), (-27, 0), (0, -27))
#: [z, y, x] of an ISBI 2012 voxel, nm: 50 nm sections of 4 x 4 nm pixels (the `data.pixel_size` default)
ISBI_PIXEL_SIZE = (50.0, 4.0, 4.0)
