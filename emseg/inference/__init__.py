"""Inference: the one sliding-window path of validation, evaluate and `emseg predict`, and `emseg predict` itself.

* [`sliding_window`][emseg.inference.sliding_window]: normalise, predict tiles, blend, optional
  8x test-time augmentation;
* [`predictor`][emseg.inference.predictor]: a loaded model and how to apply it
  ([`Predictor`][emseg.inference.predictor.Predictor]);
* [`inputs`][emseg.inference.inputs], [`outputs`][emseg.inference.outputs] and
  [`in_memory`][emseg.inference.in_memory]: `emseg predict` on images read whole;
* [`volume`][emseg.inference.volume]: `emseg predict` on volumes bigger than memory, block by block.
"""

