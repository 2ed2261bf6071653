"""Preprocessing: fetch, convert, split and augment the raw stacks, and the intensity normalisation.

The first four stages of the DVC pipeline, one module each:
[`fetch`][emseg.preprocessing.fetch] (the stacks in any layout, validated, stored as TIFFs),
[`convert`][emseg.preprocessing.convert] (one lossless PNG per slice, the labels in one convention
by [`labels`][emseg.preprocessing.labels]: membrane masks or instance labels, sparse or not),
[`split`][emseg.preprocessing.split] (training, validation and test slices) and
[`augment`][emseg.preprocessing.augment] (materialised augmented copies);
[`normalization`][emseg.preprocessing.normalization] is the per-slice z-score that training
and inference share.
"""

