"""Preprocessing: fetch, convert, split and augment the raw stacks, and the intensity normalisation.

The first four stages of the DVC pipeline, one module each:
[`fetch`][emseg.preprocessing.fetch] (the three TIFF stacks, validated),
[`convert`][emseg.preprocessing.convert] (one lossless PNG per slice),
[`split`][emseg.preprocessing.split] (training, validation and test slices) and
[`augment`][emseg.preprocessing.augment] (materialised augmented copies);
[`normalization`][emseg.preprocessing.normalization] is the per-slice z-score that training
and inference share.
"""

